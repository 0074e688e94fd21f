/**
 * The dashboard's HTTP server (Node's own): the page and its libraries, the JSON API, and
 * a server-sent event stream that says which database changed so the page refreshes what
 * it shows without reloading. Only GET and HEAD exist; nothing here writes anywhere.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InputError } from '../errors.ts';
import { AnswerCache, apiAnswer, HttpError } from './api.ts';
import { Analyses } from './analysis.ts';
import { pollChanges, type Source } from './sources.ts';
import { dashboardRoots, readStatic, type StaticRoot } from './static-files.ts';

export interface DashboardOptions {
  sources: Source[];
  host: string;
  port: number;
  /** How often the databases are checked for commits (ms). */
  pollMs?: number;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

// The page runs only its own scripts; data from the databases is inserted as text, and this
// policy stops any script a crafted string might still smuggle in.
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const HEARTBEAT_MS = 15000;

export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const roots = dashboardRoots();
  const cache = new AnswerCache();
  const streams = new Set<ServerResponse>();
  const loopback = isLoopback(o.host);

  const broadcast = (changed: Source[]): void => {
    for (const s of changed) {
      const msg = `event: change\ndata: ${JSON.stringify({ db: s.key, version: s.version })}\n\n`;
      for (const r of streams) r.write(msg);
    }
  };
  // A finished analysis is news for the pages showing that database, as a commit is.
  const analyses = new Analyses((s) => broadcast([s]));

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) process.stderr.write(`symprune dashboard: ${req.url}: ${(e as Error).stack ?? String(e)}\n`);
      send(res, status, 'application/json; charset=utf-8', JSON.stringify({ error: status === 500 ? 'internal error' : (e as Error).message }));
    }
  });

  function handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      throw new HttpError(405, `${req.method} not allowed: the dashboard only reads`);
    }
    // A page elsewhere that rebinds its own name to 127.0.0.1 would send its own Host: refuse it.
    if (loopback && !isLoopback(hostName(req.headers.host ?? ''))) throw new HttpError(403, 'Host header is not a loopback name');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/') return sendFile(res, roots.page, 'index.html');
    if (path.startsWith('/static/')) return sendFile(res, roots.page, path.slice('/static/'.length));
    if (path.startsWith('/vendor/chart/')) return sendFile(res, roots.chart, path.slice('/vendor/chart/'.length));
    if (path.startsWith('/vendor/katex/')) return sendFile(res, roots.katex, path.slice('/vendor/katex/'.length));
    if (path === '/api/events') return openStream(req, res);
    if (path.startsWith('/api/')) {
      broadcast(pollChanges(o.sources)); // answer from what is committed now, not at the last tick
      const answer = apiAnswer(o.sources, path.slice('/api/'.length), url.searchParams, cache, analyses);
      return send(res, 200, 'application/json; charset=utf-8', toJson(answer), { 'Cache-Control': 'no-store' });
    }
    throw new HttpError(404, 'not found');
  }

  function openStream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    if (req.method === 'HEAD') return void res.end();
    res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify(o.sources.map((s) => ({ db: s.key, version: s.version })))}\n\n`);
    streams.add(res);
    req.on('close', () => streams.delete(res));
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') fail(new InputError(`--port ${o.port}: already in use on ${o.host} (choose another, or 0 for any free port)`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') fail(new InputError(`--host ${o.host}: not an address of this machine`));
      else if (e.code === 'EACCES') fail(new InputError(`--port ${o.port}: not allowed (ports below 1024 need privileges)`));
      else fail(e);
    });
    server.listen(o.port, o.host, ok);
  });
  const poll = setInterval(() => broadcast(pollChanges(o.sources)), o.pollMs ?? 1000);
  const beat = setInterval(() => {
    for (const r of streams) r.write(': ping\n\n');
  }, HEARTBEAT_MS);
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}/`,
    close: () =>
      new Promise<void>((ok) => {
        clearInterval(poll);
        clearInterval(beat);
        for (const r of streams) r.end();
        server.close(() => ok());
        server.closeAllConnections();
      }).then(() => analyses.close()),
  };
}

function sendFile(res: ServerResponse, root: StaticRoot, rel: string): void {
  const f = readStatic(root, rel);
  if (!f) throw new HttpError(404, 'not found');
  send(res, 200, f.type, f.body, { 'Cache-Control': 'no-cache' });
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/** JSON with non-finite numbers (an unusable individual's Inf fitness) as null. */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x));
}

function hostName(hostHeader: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(hostHeader);
  return m ? m[1]!.replace(/^\[|\]$/g, '') : '';
}

/** 127.0.0.0/8, ::1 and localhost: names only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
