export const SERVER_CLI: string;
export const AGENT_CLI: string;
export const TERMINAL: Set<string>;
export interface Child {
  name: string;
  readonly pid: number | undefined;
  lines: string[];
  grpc: string;
  artifacts: string;
  enroll: string;
  /** The REST API's address, when the server was started with --api-listen. */
  api: string;
  proc: import('node:child_process').ChildProcess;
  exit: Promise<{ code: number | null; signal: string | null }>;
  waitForLine(predicate: (line: any) => boolean, timeoutMs?: number): Promise<any>;
  exitWithin(timeoutMs: number): Promise<{ code: number | null; signal: string | null } | undefined>;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: string | null }>;
}
/** The class behind Child: wraps any spawned process with piped stdout/stderr. */
export const Child: new (name: string, proc: import('node:child_process').ChildProcess, options?: { maxLines?: number }) => Child;
export function serverCli(dataDir: string, args: string[]): Promise<any>;
/** `serve` on dataDir with the device API, artifact and enrollment listeners on ephemeral ports; extraArgs after them (a later flag wins). */
export function serveArgs(dataDir: string, extraArgs?: string[]): string[];
export function startServer(dataDir: string, options?: { heartbeatSeconds?: number; extraArgs?: string[]; execArgv?: string[] }): Promise<Child>;
export function spawnAgent(args: string[], options?: { env?: Record<string, string>; cli?: string }): Child;
export function spawnNode(name: string, file: string, args: string[], env?: Record<string, string>, options?: { maxLines?: number; execArgv?: string[] }): Child;
/** `run --server … --data-dir DIR` for the credentials in certDir; `server` may be a started server or just its two addresses. */
export function agentRunArgs(server: { grpc: string; artifacts: string }, certDir: string, dataDir: string): string[];
export function startAgent(
  server: { grpc: string; artifacts: string },
  certDir: string,
  dataDir: string,
  options?: { extraArgs?: string[]; env?: Record<string, string>; execArgv?: string[] },
): Child;
export function waitForAssignment(dataDir: string, assignmentId: string, options?: { timeoutMs?: number; onState?: (report: any) => void }): Promise<any>;
