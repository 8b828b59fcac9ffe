// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Target
/// @notice Contract that test proposals call.
contract Target {
    error AlwaysReverts(uint256 code);

    event ValueSet(address indexed caller, uint256 oldValue, uint256 newValue);
    event Received(address indexed sender, uint256 amount);

    uint256 public value;
    uint256 public setCount;

    function setValue(uint256 newValue) external payable {
        uint256 old = value;
        value = newValue;
        setCount += 1;
        emit ValueSet(msg.sender, old, newValue);
    }

    /// @notice Always reverts with a custom error; useful to make a proposal's execution fail.
    function alwaysRevert() external pure {
        revert AlwaysReverts(42);
    }

    /// @notice Always reverts with a reason string.
    function alwaysRevertWithReason() external pure {
        revert("Target: always reverts");
    }

    receive() external payable {
        emit Received(msg.sender, msg.value);
    }
}
