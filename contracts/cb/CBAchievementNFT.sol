// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721Burnable} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721Burnable.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {CBBenefitExecutor} from "./CBBenefitExecutor.sol";

/// @title CBAchievementNFT
/// @notice CultureBridge reference: achievement NFTs. The owner mints; holders transfer and burn
///         them like any ERC-721. Every token has an achievement type (1..255) fixed at mint.
///         Every mint, transfer and burn notifies the CBBenefitExecutor in the same transaction,
///         so governance bonuses and special benefits follow the NFTs block by block.
contract CBAchievementNFT is ERC721, ERC721Burnable, Ownable {
    CBBenefitExecutor private immutable _benefitExecutor;

    /// @dev Id of the last minted token; ids start at 1.
    uint256 private _lastTokenId;
    mapping(uint256 tokenId => uint8) private _achievementTypes;

    event AchievementMinted(address indexed to, uint256 indexed tokenId, uint8 indexed achievementType);

    error CBInvalidAchievementType(uint8 achievementType);
    error CBZeroAddress();

    constructor(string memory name_, string memory symbol_, address initialOwner, CBBenefitExecutor benefitExecutor_)
        ERC721(name_, symbol_)
        Ownable(initialOwner)
    {
        if (address(benefitExecutor_) == address(0)) revert CBZeroAddress();
        _benefitExecutor = benefitExecutor_;
    }

    /// @notice Mints the next token id to `to` with `achievementType` (1..255).
    function mint(address to, uint8 achievementType) external onlyOwner returns (uint256 tokenId) {
        if (achievementType == 0) revert CBInvalidAchievementType(achievementType);
        tokenId = ++_lastTokenId;
        _achievementTypes[tokenId] = achievementType;
        emit AchievementMinted(to, tokenId, achievementType);
        _safeMint(to, tokenId);
    }

    /// @notice Achievement type of an existing token (reverts for a nonexistent or burned one).
    function achievementTypeOf(uint256 tokenId) external view returns (uint8) {
        _requireOwned(tokenId);
        return _achievementTypes[tokenId];
    }

    function benefitExecutor() external view returns (address) {
        return address(_benefitExecutor);
    }

    /// @notice Number of tokens minted so far (burned ones included); also the last token id.
    function totalMinted() external view returns (uint256) {
        return _lastTokenId;
    }

    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        from = super._update(to, tokenId, auth);
        _benefitExecutor.onAchievementTransfer(from, to, tokenId, _achievementTypes[tokenId]);
    }
}
