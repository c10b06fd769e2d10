/**
 * A local chain to try the daemon by hand: starts anvil on 127.0.0.1, deploys the project's
 * EnergyOracle-compatible test contract, authorises and funds a fresh signer, and prints
 * the variables to run the daemon against it. Runs until Ctrl-C, then stops anvil.
 *
 * Usage: npm run local-chain [-- --port 8545]
 */
import { parseArgs } from 'node:util';
import { Wallet, parseEther } from 'ethers';
import { ANVIL_KEYS, deployOracle, startAnvil } from '../test/support/chain';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string' } } });
  const port = values.port === undefined ? undefined : Number(values.port);
  const chain = await startAnvil({ port });

  const signer = Wallet.createRandom();
  const oracle = await deployOracle(chain, { signers: [signer.address] });
  const funder = new Wallet(ANVIL_KEYS[0]!, chain.provider);
  await (await funder.sendTransaction({ to: signer.address, value: parseEther('10') })).wait();

  console.log(`anvil is running at ${chain.rpcUrl} (chain id ${chain.chainId}).`);
  console.log(
    `EnergyOracle test contract: ${oracle.address}; signer ${signer.address} is authorised and funded.`,
  );
  console.log('This throwaway key exists only on this local chain. In another shell, run:\n');
  console.log(`export ENERGY_ORACLE_RPC_URL=${chain.rpcUrl}`);
  console.log(`export ENERGY_ORACLE_ADDRESS=${oracle.address}`);
  console.log(`export ENERGY_ORACLE_SIGNER_KEY=${signer.privateKey}`);
  console.log('export ENERGY_LOG_DIR=/tmp/operator-telemetry-try/logs');
  console.log('export TELEMETRY_STATE_FILE=/tmp/operator-telemetry-try/state.json');
  console.log(
    'mkdir -p /tmp/operator-telemetry-try && cp -r test/fixtures/samples /tmp/operator-telemetry-try/logs',
  );
  console.log('node apps/operator/dist/telemetry.js\n');
  console.log('Press Ctrl-C to stop the chain.');

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await chain.stop();
}

main().catch((error: unknown) => {
  console.error(`local chain failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
