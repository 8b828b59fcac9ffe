#!/usr/bin/env node
// Compiles contracts/*.sol and contracts/cb/*.sol (the CultureBridge reference contracts) with
// the npm `solc` (solcjs) through the standard-JSON interface, in one compilation, and writes
// contracts/artifacts/<Name>.json (one flat directory: contract names must be unique).
//
//   node scripts/compile-contracts.js          compile and (re)write the artifacts
//   node scripts/compile-contracts.js --check  compile in memory; exit 1 if any committed
//                                              artifact is missing, stale or unexpected
//
// Every artifact is { contractName, abi, bytecode, deployedBytecode, sourceHash }, written
// with a stable key order, 2-space indentation and a trailing newline, so the output is
// byte-for-byte reproducible from the same sources, OpenZeppelin version and compiler.
//
// sourceHash is the sha256 of a canonical description of everything the contract was
// compiled from: compiler version, settings, and the path + keccak256 of every source
// file in its compilation (as listed in solc's metadata).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const CONTRACTS_DIR = path.join(ROOT, 'contracts');
const ARTIFACTS_DIR = path.join(CONTRACTS_DIR, 'artifacts');
// Source directories, relative to contracts/ ('' = contracts/ itself); not recursive.
const SOURCE_DIRS = ['', 'cb'];
const NODE_MODULES = path.join(ROOT, 'node_modules');

const EXPECTED_SOLC = '0.8.28';
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: {
    '*': {
      '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'metadata'],
    },
  },
};
// EIP-170 runtime code limit and EIP-3860 initcode limit.
const MAX_RUNTIME_BYTES = 24576;
const MAX_INITCODE_BYTES = 49152;

function fail(msg) {
  process.stderr.write(`compile-contracts: ${msg}\n`);
  process.exit(1);
}

function loadSolc() {
  let solc;
  try {
    solc = require(path.join(NODE_MODULES, 'solc'));
  } catch (e) {
    fail(`cannot load npm 'solc' from ${NODE_MODULES} (run \`npm ci\` / scripts/setup.sh): ${e.message}`);
  }
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + '+')) {
    fail(`expected solc ${EXPECTED_SOLC}, found ${version}; artifacts would not be reproducible`);
  }
  return solc;
}

// Import callback: resolves "@openzeppelin/..." (and any other package path) from node_modules,
// and project-relative paths ("contracts/...") from the repository root.
function findImports(importPath) {
  const candidates = [];
  if (importPath.startsWith('@') || !importPath.startsWith('.')) {
    candidates.push(path.join(NODE_MODULES, importPath));
  }
  candidates.push(path.join(ROOT, importPath));
  for (const file of candidates) {
    const resolved = path.resolve(file);
    // Never read outside the repository.
    if (!resolved.startsWith(ROOT + path.sep)) continue;
    if (fs.existsSync(resolved) && fs.statSync(resolved).isFile()) {
      return { contents: fs.readFileSync(resolved, 'utf8') };
    }
  }
  return { error: `File not found: ${importPath} (is node_modules installed? run scripts/setup.sh)` };
}

// Source files as paths relative to contracts/ ("GovToken.sol", "cb/CBTimelock.sol"), in a
// stable order. Every source directory must exist and hold at least one .sol file.
function sourceFiles() {
  if (!fs.existsSync(CONTRACTS_DIR)) fail(`no ${CONTRACTS_DIR}`);
  const files = [];
  for (const dir of SOURCE_DIRS) {
    const abs = path.join(CONTRACTS_DIR, dir);
    const shown = path.relative(ROOT, abs);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) fail(`no ${shown} directory`);
    const here = fs
      .readdirSync(abs)
      .filter((f) => f.endsWith('.sol'))
      .sort()
      .map((f) => (dir ? `${dir}/${f}` : f));
    if (here.length === 0) fail(`no .sol files in ${shown}`);
    files.push(...here);
  }
  const seen = new Map();
  for (const f of files) {
    const name = path.basename(f, '.sol');
    if (seen.has(name)) {
      fail(`contracts/${seen.get(name)} and contracts/${f} would both write artifacts/${name}.json`);
    }
    seen.set(name, f);
  }
  return files;
}

function compile(solc) {
  const files = sourceFiles();
  const sources = {};
  for (const f of files) {
    sources[`contracts/${f}`] = { content: fs.readFileSync(path.join(CONTRACTS_DIR, f), 'utf8') };
  }
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const diagnostics = output.errors || [];
  const errors = diagnostics.filter((d) => d.severity === 'error');
  for (const d of diagnostics.filter((d) => d.severity !== 'error')) {
    process.stderr.write(`${d.formattedMessage || d.message}\n`);
  }
  if (errors.length > 0) {
    for (const d of errors) process.stderr.write(`${d.formattedMessage || d.message}\n`);
    fail(`compilation failed with ${errors.length} error(s)`);
  }

  const artifacts = {};
  for (const f of files) {
    const unit = `contracts/${f}`;
    const name = path.basename(f, '.sol');
    const contract = output.contracts && output.contracts[unit] && output.contracts[unit][name];
    if (!contract) {
      fail(`${unit} must define a contract named ${name} (one artifact per file, named after it)`);
    }
    const bytecode = contract.evm.bytecode.object;
    const deployed = contract.evm.deployedBytecode.object;
    if (/__\$[0-9a-fA-F]{34}\$__/.test(bytecode)) {
      fail(`${name} needs library linking, which this script does not support`);
    }
    const runtimeBytes = deployed.length / 2;
    const initBytes = bytecode.length / 2;
    if (runtimeBytes > MAX_RUNTIME_BYTES) {
      fail(`${name} runtime bytecode is ${runtimeBytes} bytes, over the ${MAX_RUNTIME_BYTES}-byte EIP-170 limit`);
    }
    if (initBytes > MAX_INITCODE_BYTES) {
      fail(`${name} initcode is ${initBytes} bytes, over the ${MAX_INITCODE_BYTES}-byte EIP-3860 limit`);
    }
    artifacts[name] = {
      contractName: name,
      abi: contract.abi,
      bytecode: '0x' + bytecode,
      deployedBytecode: '0x' + deployed,
      sourceHash: sourceHash(solc.version(), JSON.parse(contract.metadata)),
      runtimeBytes,
      unit,
    };
  }
  return artifacts;
}

function sourceHash(version, metadata) {
  const entries = Object.keys(metadata.sources)
    .sort()
    .map((p) => `${p} ${metadata.sources[p].keccak256}`);
  const canonical = [
    `solc ${version}`,
    `optimizer ${SETTINGS.optimizer.enabled} runs ${SETTINGS.optimizer.runs}`,
    `evmVersion ${SETTINGS.evmVersion}`,
    ...entries,
  ].join('\n');
  return '0x' + crypto.createHash('sha256').update(canonical).digest('hex');
}

function render(a) {
  // Explicit key order; JSON.stringify keeps insertion order, and the ABI comes
  // from solc in a deterministic order.
  const ordered = {
    contractName: a.contractName,
    abi: a.abi,
    bytecode: a.bytecode,
    deployedBytecode: a.deployedBytecode,
    sourceHash: a.sourceHash,
  };
  return JSON.stringify(ordered, null, 2) + '\n';
}

function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) fail(`unknown argument(s): ${unknown.join(' ')} (usage: compile-contracts.js [--check])`);
  const check = args.includes('--check');

  const solc = loadSolc();
  const artifacts = compile(solc);
  const names = Object.keys(artifacts).sort();

  if (check) {
    const problems = [];
    for (const name of names) {
      const file = path.join(ARTIFACTS_DIR, `${name}.json`);
      const rel = path.relative(ROOT, file);
      if (!fs.existsSync(file)) {
        problems.push(`${rel} is missing`);
      } else if (fs.readFileSync(file, 'utf8') !== render(artifacts[name])) {
        problems.push(`${rel} differs from what ${artifacts[name].unit} compiles to`);
      }
    }
    if (fs.existsSync(ARTIFACTS_DIR)) {
      for (const f of fs.readdirSync(ARTIFACTS_DIR).sort()) {
        if (f.endsWith('.json') && !artifacts[path.basename(f, '.json')]) {
          problems.push(`contracts/artifacts/${f} has no matching contracts/*.sol or contracts/cb/*.sol source`);
        }
      }
    }
    if (problems.length > 0) {
      for (const p of problems) process.stderr.write(`compile-contracts --check: ${p}\n`);
      fail('artifacts are out of date: run `node scripts/compile-contracts.js` and commit the result');
    }
    process.stdout.write(`compile-contracts --check: ${names.length} artifacts up to date (solc ${solc.version()})\n`);
    return;
  }

  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  for (const name of names) {
    const file = path.join(ARTIFACTS_DIR, `${name}.json`);
    const text = render(artifacts[name]);
    const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (old !== text) fs.writeFileSync(file, text);
    process.stdout.write(
      `${old === text ? 'unchanged' : 'wrote    '} ${path.relative(ROOT, file)} (runtime ${artifacts[name].runtimeBytes} bytes)\n`,
    );
  }
}

main();
