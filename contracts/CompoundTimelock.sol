// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ICompoundTimelock} from "@openzeppelin/contracts/vendor/compound/ICompoundTimelock.sol";

/// @title CompoundTimelock
/// @notice A minimal Compound-style timelock (the interface OpenZeppelin's
///         GovernorTimelockCompound drives), written for govflow's tests. Unlike Compound's
///         own contract, the grace period is set at deployment, so tests can make queued
///         proposals expire after seconds rather than 14 days, and the delay may be 0.
///
///         A transaction is identified by keccak256(abi.encode(target, value, signature, data,
///         eta)). The admin queues it for an `eta` at least `delay` seconds ahead, and may
///         execute it from `eta` until `eta + GRACE_PERIOD` (inclusive, as in Compound; the
///         governor already calls a proposal Expired from `eta + GRACE_PERIOD`) or cancel it.
///
///         Admin handover, as in Compound: the constructor's admin may call `setPendingAdmin`
///         once, directly (so a deployer can hand the timelock to a governor it deployed
///         afterwards); every later call must come from the timelock itself, i.e. through a
///         queued transaction. The pending admin takes over with `acceptAdmin`
///         (GovernorTimelockCompound exposes it as `__acceptAdmin()`).
contract CompoundTimelock is ICompoundTimelock {
    error CompoundTimelockUnauthorized(address caller);
    error CompoundTimelockInvalidDelay(uint256 delay, uint256 minimum, uint256 maximum);
    error CompoundTimelockEtaTooEarly(uint256 eta, uint256 earliest);
    error CompoundTimelockNotQueued(bytes32 txHash);
    error CompoundTimelockNotReady(bytes32 txHash, uint256 eta);
    error CompoundTimelockStale(bytes32 txHash, uint256 expiredAt);
    error CompoundTimelockCallFailed(bytes32 txHash, bytes returnData);

    /// @inheritdoc ICompoundTimelock
    uint256 public constant MINIMUM_DELAY = 0;
    /// @inheritdoc ICompoundTimelock
    uint256 public constant MAXIMUM_DELAY = 30 days;
    /// @notice Seconds after its eta during which a queued transaction can still be executed.
    uint256 public immutable GRACE_PERIOD;

    /// @inheritdoc ICompoundTimelock
    address public admin;
    /// @inheritdoc ICompoundTimelock
    address public pendingAdmin;
    /// @inheritdoc ICompoundTimelock
    uint256 public delay;
    /// @inheritdoc ICompoundTimelock
    mapping(bytes32 => bool) public queuedTransactions;

    /// @notice Whether the one direct `setPendingAdmin` by the admin has been used.
    bool public adminInitialized;

    constructor(address admin_, uint256 delay_, uint256 gracePeriod_) {
        _checkDelay(delay_);
        admin = admin_;
        delay = delay_;
        GRACE_PERIOD = gracePeriod_;
        emit NewAdmin(admin_);
        emit NewDelay(delay_);
    }

    receive() external payable {}

    modifier onlyAdmin() {
        if (msg.sender != admin) revert CompoundTimelockUnauthorized(msg.sender);
        _;
    }

    modifier onlySelf() {
        if (msg.sender != address(this)) revert CompoundTimelockUnauthorized(msg.sender);
        _;
    }

    /// @notice Changes the delay; only through a queued transaction of the timelock itself.
    function setDelay(uint256 delay_) external onlySelf {
        _checkDelay(delay_);
        delay = delay_;
        emit NewDelay(delay_);
    }

    /// @notice The pending admin becomes the admin.
    function acceptAdmin() external {
        if (msg.sender != pendingAdmin) revert CompoundTimelockUnauthorized(msg.sender);
        admin = msg.sender;
        pendingAdmin = address(0);
        emit NewAdmin(msg.sender);
    }

    /// @notice Proposes a new admin: once by the admin directly, afterwards only through a
    ///         queued transaction of the timelock itself.
    function setPendingAdmin(address pendingAdmin_) external {
        if (adminInitialized) {
            if (msg.sender != address(this)) revert CompoundTimelockUnauthorized(msg.sender);
        } else {
            if (msg.sender != admin) revert CompoundTimelockUnauthorized(msg.sender);
            adminInitialized = true;
        }
        pendingAdmin = pendingAdmin_;
        emit NewPendingAdmin(pendingAdmin_);
    }

    /// @notice Queues a call for `eta` (at least `delay` seconds from now).
    function queueTransaction(
        address target,
        uint256 value,
        string memory signature,
        bytes memory data,
        uint256 eta
    ) external onlyAdmin returns (bytes32) {
        uint256 earliest = block.timestamp + delay;
        if (eta < earliest) revert CompoundTimelockEtaTooEarly(eta, earliest);
        bytes32 txHash = _hash(target, value, signature, data, eta);
        queuedTransactions[txHash] = true;
        emit QueueTransaction(txHash, target, value, signature, data, eta);
        return txHash;
    }

    /// @notice Drops a queued call.
    function cancelTransaction(
        address target,
        uint256 value,
        string memory signature,
        bytes memory data,
        uint256 eta
    ) external onlyAdmin {
        bytes32 txHash = _hash(target, value, signature, data, eta);
        queuedTransactions[txHash] = false;
        emit CancelTransaction(txHash, target, value, signature, data, eta);
    }

    /// @notice Performs a queued call once its eta has come and before it went stale. With a
    ///         non-empty `signature`, the call data is its selector followed by `data`.
    function executeTransaction(
        address target,
        uint256 value,
        string memory signature,
        bytes memory data,
        uint256 eta
    ) external payable onlyAdmin returns (bytes memory) {
        bytes32 txHash = _hash(target, value, signature, data, eta);
        if (!queuedTransactions[txHash]) revert CompoundTimelockNotQueued(txHash);
        if (block.timestamp < eta) revert CompoundTimelockNotReady(txHash, eta);
        if (block.timestamp > eta + GRACE_PERIOD) revert CompoundTimelockStale(txHash, eta + GRACE_PERIOD);
        queuedTransactions[txHash] = false;

        bytes memory callData = bytes(signature).length == 0
            ? data
            : abi.encodePacked(bytes4(keccak256(bytes(signature))), data);
        (bool ok, bytes memory returnData) = target.call{value: value}(callData);
        if (!ok) revert CompoundTimelockCallFailed(txHash, returnData);

        emit ExecuteTransaction(txHash, target, value, signature, data, eta);
        return returnData;
    }

    function _hash(address target, uint256 value, string memory signature, bytes memory data, uint256 eta)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(target, value, signature, data, eta));
    }

    function _checkDelay(uint256 delay_) private pure {
        if (delay_ < MINIMUM_DELAY || delay_ > MAXIMUM_DELAY) {
            revert CompoundTimelockInvalidDelay(delay_, MINIMUM_DELAY, MAXIMUM_DELAY);
        }
    }
}
