// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC6372} from "@openzeppelin/contracts/interfaces/IERC6372.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {Time} from "@openzeppelin/contracts/utils/types/Time.sol";

/// @title CBBenefitExecutor
/// @notice CultureBridge reference: turns the achievement NFTs an account holds into
///         (a) a governance weight bonus, in token units, added to its votes by CBVotingManager,
///         and (b) special benefits (a proposal-fee discount and a priority boost).
///
///         Every achievement type (1..255; 0 is not a type) has a bonus and a special benefit,
///         both set by the owner. An account's bonus is the sum of the bonuses of the NFTs it
///         holds; it is checkpointed on the ERC-6372 clock (block number, like GovToken), so
///         the bonus at a past timepoint (a proposal's snapshot) never changes afterwards.
///         An account's special benefits are the best among the types it holds: the highest
///         fee discount and the highest priority boost (each taken on its own).
///
///         Changing a type's bonus or special benefit applies at once to every current holder of
///         that type: their bonus gets a new checkpoint at the current clock (past checkpoints are
///         never rewritten) and the corresponding *Changed events are emitted for each of them.
///         The cost of such a change grows with the number of holders of the type.
///
///         Wiring: deploy this contract, then CBAchievementNFT with this address, then call
///         {setAchievementNFT} once. Only that NFT contract may call {onAchievementTransfer}.
contract CBBenefitExecutor is Ownable, IERC6372 {
    using Checkpoints for Checkpoints.Trace208;
    using EnumerableSet for EnumerableSet.AddressSet;

    /// @dev Largest fee discount: 100 %.
    uint256 public constant MAX_FEE_DISCOUNT_BPS = 10_000;

    struct SpecialBenefit {
        uint256 feeDiscountBps;
        uint256 priorityBoost;
    }

    event AchievementNFTSet(address indexed nft);
    event TypeBonusSet(uint8 achievementType, uint256 bonus);
    event SpecialBenefitSet(uint8 achievementType, uint256 feeDiscountBps, uint256 priorityBoost);
    event GovernanceWeightBonusChanged(address indexed account, uint256 previousBonus, uint256 newBonus);
    event SpecialBenefitsChanged(address indexed account, uint256 feeDiscountBps, uint256 priorityBoost);

    error CBInvalidAchievementType(uint8 achievementType);
    error CBInvalidFeeDiscount(uint256 feeDiscountBps);
    error CBAchievementNFTAlreadySet(address nft);
    error CBZeroAddress();
    error CBUnauthorizedCaller(address caller);
    error ERC5805FutureLookup(uint256 timepoint, uint48 clock);

    address private _achievementNFT;

    mapping(uint8 achievementType => uint256) private _typeBonus;
    mapping(uint8 achievementType => SpecialBenefit) private _typeBenefit;
    mapping(uint8 achievementType => EnumerableSet.AddressSet) private _holders;

    mapping(address account => Checkpoints.Trace208) private _bonusCheckpoints;
    mapping(address account => mapping(uint8 achievementType => uint256)) private _heldCount;
    /// @dev Bit t set = the account holds at least one NFT of type t.
    mapping(address account => uint256) private _heldTypes;
    mapping(address account => SpecialBenefit) private _accountBenefit;

    constructor(address initialOwner) Ownable(initialOwner) {}

    modifier validType(uint8 achievementType) {
        if (achievementType == 0) revert CBInvalidAchievementType(achievementType);
        _;
    }

    // ----- ERC-6372 ------------------------------------------------------------------------

    /// @notice Block number, as GovToken's default clock.
    function clock() public view returns (uint48) {
        return Time.blockNumber();
    }

    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() public pure returns (string memory) {
        return "mode=blocknumber&from=default";
    }

    // ----- configuration (owner) -------------------------------------------------------------

    /// @notice Binds the achievement NFT contract; can be done once.
    function setAchievementNFT(address nft) external onlyOwner {
        if (nft == address(0)) revert CBZeroAddress();
        if (_achievementNFT != address(0)) revert CBAchievementNFTAlreadySet(_achievementNFT);
        _achievementNFT = nft;
        emit AchievementNFTSet(nft);
    }

    /// @notice Sets the governance weight bonus (token units) of one NFT of `achievementType`
    ///         and re-checkpoints every current holder of that type.
    function setTypeBonus(uint8 achievementType, uint256 bonus) external onlyOwner validType(achievementType) {
        uint256 oldBonus = _typeBonus[achievementType];
        _typeBonus[achievementType] = bonus;
        emit TypeBonusSet(achievementType, bonus);
        if (oldBonus == bonus) return;
        EnumerableSet.AddressSet storage holders = _holders[achievementType];
        uint256 n = holders.length();
        for (uint256 i = 0; i < n; ++i) {
            address account = holders.at(i);
            uint256 count = _heldCount[account][achievementType];
            // By construction the current bonus includes count * oldBonus.
            _setBonus(account, _bonusCheckpoints[account].latest() - count * oldBonus + count * bonus);
        }
    }

    /// @notice Sets the special benefit of `achievementType` and refreshes every current holder's
    ///         best benefits.
    function setSpecialBenefit(uint8 achievementType, uint256 feeDiscountBps, uint256 priorityBoost)
        external
        onlyOwner
        validType(achievementType)
    {
        if (feeDiscountBps > MAX_FEE_DISCOUNT_BPS) revert CBInvalidFeeDiscount(feeDiscountBps);
        _typeBenefit[achievementType] = SpecialBenefit(feeDiscountBps, priorityBoost);
        emit SpecialBenefitSet(achievementType, feeDiscountBps, priorityBoost);
        EnumerableSet.AddressSet storage holders = _holders[achievementType];
        uint256 n = holders.length();
        for (uint256 i = 0; i < n; ++i) {
            _refreshBenefits(holders.at(i));
        }
    }

    // ----- NFT hook --------------------------------------------------------------------------

    /// @notice Called by the achievement NFT on every mint (`from` = 0), transfer and burn
    ///         (`to` = 0), in the same transaction.
    function onAchievementTransfer(address from, address to, uint256 tokenId, uint8 achievementType) external {
        tokenId; // part of the interface; the bonus only depends on the type
        if (msg.sender != _achievementNFT) revert CBUnauthorizedCaller(msg.sender);
        if (from == to) return;
        uint256 bonus = _typeBonus[achievementType];
        if (from != address(0)) {
            uint256 count = --_heldCount[from][achievementType];
            if (count == 0) {
                _heldTypes[from] &= ~(uint256(1) << achievementType);
                _holders[achievementType].remove(from);
            }
            if (bonus != 0) _setBonus(from, _bonusCheckpoints[from].latest() - bonus);
            _refreshBenefits(from);
        }
        if (to != address(0)) {
            if (_heldCount[to][achievementType]++ == 0) {
                _heldTypes[to] |= uint256(1) << achievementType;
                _holders[achievementType].add(to);
            }
            if (bonus != 0) _setBonus(to, _bonusCheckpoints[to].latest() + bonus);
            _refreshBenefits(to);
        }
    }

    // ----- views -----------------------------------------------------------------------------

    function achievementNFT() external view returns (address) {
        return _achievementNFT;
    }

    /// @notice Current bonus of `account` (sum of the bonuses of the NFTs it holds).
    function getGovernanceWeightBonus(address account) external view returns (uint256) {
        return _bonusCheckpoints[account].latest();
    }

    /// @notice Bonus of `account` at the end of `timepoint` (a block number before the current one).
    function getPastGovernanceWeightBonus(address account, uint256 timepoint) external view returns (uint256) {
        uint48 current = clock();
        if (timepoint >= current) revert ERC5805FutureLookup(timepoint, current);
        return _bonusCheckpoints[account].upperLookupRecent(SafeCast.toUint48(timepoint));
    }

    /// @notice Best special benefits among the NFTs `account` holds.
    function getSpecialBenefits(address account) external view returns (uint256 feeDiscountBps, uint256 priorityBoost) {
        SpecialBenefit storage b = _accountBenefit[account];
        return (b.feeDiscountBps, b.priorityBoost);
    }

    function typeBonus(uint8 achievementType) external view returns (uint256) {
        return _typeBonus[achievementType];
    }

    function typeSpecialBenefit(uint8 achievementType)
        external
        view
        returns (uint256 feeDiscountBps, uint256 priorityBoost)
    {
        SpecialBenefit storage b = _typeBenefit[achievementType];
        return (b.feeDiscountBps, b.priorityBoost);
    }

    /// @notice Number of NFTs of `achievementType` that `account` holds.
    function achievementCount(address account, uint8 achievementType) external view returns (uint256) {
        return _heldCount[account][achievementType];
    }

    /// @notice Number of accounts holding at least one NFT of `achievementType`.
    function holderCount(uint8 achievementType) external view returns (uint256) {
        return _holders[achievementType].length();
    }

    /// @notice Number of bonus checkpoints of `account`.
    function numBonusCheckpoints(address account) external view returns (uint256) {
        return _bonusCheckpoints[account].length();
    }

    // ----- internals -------------------------------------------------------------------------

    function _setBonus(address account, uint256 newBonus) private {
        (uint208 previous, uint208 current) =
            _bonusCheckpoints[account].push(clock(), SafeCast.toUint208(newBonus));
        if (previous != current) emit GovernanceWeightBonusChanged(account, previous, current);
    }

    function _refreshBenefits(address account) private {
        uint256 bestFee;
        uint256 bestBoost;
        uint256 bits = _heldTypes[account];
        for (uint256 t = 0; bits != 0; ++t) {
            if (bits & 1 != 0) {
                SpecialBenefit storage b = _typeBenefit[uint8(t)];
                if (b.feeDiscountBps > bestFee) bestFee = b.feeDiscountBps;
                if (b.priorityBoost > bestBoost) bestBoost = b.priorityBoost;
            }
            bits >>= 1;
        }
        SpecialBenefit storage current = _accountBenefit[account];
        if (current.feeDiscountBps != bestFee || current.priorityBoost != bestBoost) {
            current.feeDiscountBps = bestFee;
            current.priorityBoost = bestBoost;
            emit SpecialBenefitsChanged(account, bestFee, bestBoost);
        }
    }
}
