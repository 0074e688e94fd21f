/** `symprune dashboard`: a live web page over search databases, read-only, on loopback by default. */
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { closeSources, openSources } from '../../dashboard/sources.ts';
import { isLoopback, startDashboard } from '../../dashboard/server.ts';

interface Args {
  db: string[];
  port: number;
  host: string;
}

export const dashboardCommand: CommandModule<object, Args> = {
  command: 'dashboard',
  describe: 'serve a live dashboard of search databases in the browser (read-only)',
  builder: (y) =>
    y
      .option('db', { type: 'string', array: true, demandOption: true, describe: 'search database (.sqlite); repeat for several' })
      .option('port', { type: 'number', default: 8787, describe: 'TCP port (0: any free port)' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on; anything but loopback exposes the runs to the network' }) as never,
  handler: async (a) => {
    if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new InputError(`--port must be an integer from 0 to 65535, got ${a.port}`);
    if (a.host.trim() === '') throw new InputError('--host: empty');
    const sources = openSources(a.db.map(String));
    let dash;
    try {
      dash = await startDashboard({ sources, host: a.host, port: a.port });
    } catch (e) {
      closeSources(sources);
      throw e;
    }
    if (!isLoopback(a.host)) process.stderr.write(`symprune dashboard: listening on ${a.host}: anyone who reaches it can read these runs (no authentication)\n`);
    process.stdout.write(`symprune dashboard: ${dash.url} (${sources.length} database${sources.length === 1 ? '' : 's'}, read-only); Ctrl-C to stop\n`);
    await new Promise<void>((ok) => {
      const stop = (): void => {
        process.removeListener('SIGINT', stop);
        process.removeListener('SIGTERM', stop);
        ok();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await dash.close();
    closeSources(sources);
  },
};
