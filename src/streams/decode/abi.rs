//! The event bindings, generated at compile time by alloy's `sol!` from the ABIs of the contracts
//! govflow reads (`contracts/artifacts/*.json`, the solc output the tests deploy). One contract
//! per family: the Governor (OpenZeppelin `Governor` with its extensions), the
//! `TimelockController`, the `ERC20Votes` token, the achievement NFT (ERC-721) and the
//! CultureBridge benefit executor. A new event is an ABI away: add its artifact here and its
//! arm in [`super::decode`].

#![allow(missing_docs, clippy::all, clippy::pedantic)]

alloy_sol_types::sol!(Governor, "contracts/artifacts/TestGovernor.json");
alloy_sol_types::sol!(Timelock, "contracts/artifacts/GovTimelock.json");
alloy_sol_types::sol!(VotesToken, "contracts/artifacts/GovToken.json");
alloy_sol_types::sol!(AchievementNft, "contracts/artifacts/CBAchievementNFT.json");
alloy_sol_types::sol!(BenefitExecutor, "contracts/artifacts/CBBenefitExecutor.json");
