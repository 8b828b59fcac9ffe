// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC5805} from "@openzeppelin/contracts/interfaces/IERC5805.sol";
import {CBBenefitExecutor} from "./CBBenefitExecutor.sol";

/// @title CBVotingManager
/// @notice CultureBridge reference: the vote source (IVotes + IERC6372, i.e. IERC5805) of
///         CBGovernorCore. An account's votes are its token votes plus its achievement bonus:
///
///           getVotes(a)         = token.getVotes(a)         + executor.getGovernanceWeightBonus(a)
///           getPastVotes(a, t)  = token.getPastVotes(a, t)  + executor.getPastGovernanceWeightBonus(a, t)
///
///         The bonus belongs to the NFT holder and is not delegable; token votes follow the
///         token's delegation, which happens on the token ({delegate} and {delegateBySig} here
///         revert).
///
///         Quorum: getPastTotalSupply(t) is the token's past total supply only, so the governor's
///         quorum is a fraction of the token supply; bonuses count towards reaching it (as votes)
///         but do not raise it.
///
///         The clock is the token's; the constructor checks that the executor checkpoints on the
///         same clock mode.
contract CBVotingManager is IERC5805 {
    IERC5805 private immutable _token;
    CBBenefitExecutor private immutable _benefitExecutor;

    error CBDelegateOnToken(address token);
    error CBClockModeMismatch(string tokenClockMode, string executorClockMode);
    error CBZeroAddress();

    constructor(IERC5805 token_, CBBenefitExecutor benefitExecutor_) {
        if (address(token_) == address(0) || address(benefitExecutor_) == address(0)) revert CBZeroAddress();
        string memory tokenMode = token_.CLOCK_MODE();
        string memory executorMode = benefitExecutor_.CLOCK_MODE();
        if (keccak256(bytes(tokenMode)) != keccak256(bytes(executorMode))) {
            revert CBClockModeMismatch(tokenMode, executorMode);
        }
        _token = token_;
        _benefitExecutor = benefitExecutor_;
    }

    function token() external view returns (address) {
        return address(_token);
    }

    function benefitExecutor() external view returns (address) {
        return address(_benefitExecutor);
    }

    function clock() external view returns (uint48) {
        return _token.clock();
    }

    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() external view returns (string memory) {
        return _token.CLOCK_MODE();
    }

    function getVotes(address account) external view returns (uint256) {
        return _token.getVotes(account) + _benefitExecutor.getGovernanceWeightBonus(account);
    }

    function getPastVotes(address account, uint256 timepoint) external view returns (uint256) {
        return _token.getPastVotes(account, timepoint) + _benefitExecutor.getPastGovernanceWeightBonus(account, timepoint);
    }

    /// @notice The token's past total supply: bonuses are not part of the quorum base.
    function getPastTotalSupply(uint256 timepoint) external view returns (uint256) {
        return _token.getPastTotalSupply(timepoint);
    }

    function delegates(address account) external view returns (address) {
        return _token.delegates(account);
    }

    /// @notice Always reverts: delegate on the token.
    function delegate(address) external view {
        revert CBDelegateOnToken(address(_token));
    }

    /// @notice Always reverts: delegate on the token.
    function delegateBySig(address, uint256, uint256, uint8, bytes32, bytes32) external view {
        revert CBDelegateOnToken(address(_token));
    }
}
