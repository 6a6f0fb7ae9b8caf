// @meshanics/core/contract: the side-effect-free part of core that the server shares with
// the agent. It must never import device code (plugins, file system swaps, runtimes).
export * from './proto.js';
export * from './messages.js';
export * from './identity.js';
export * from './schema.js';
export * from './tuf-layout.js';
