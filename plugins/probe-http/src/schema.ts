// Side-effect-free: the server imports this to validate specs exactly as devices do.
export const PROBE_TYPE = 'http';
