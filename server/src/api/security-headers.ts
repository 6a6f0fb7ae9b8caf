// Security headers of every REST API and console response (issue 25). The console is static
// files and one module script: nothing inline, so the policy can forbid inline scripts and
// styles outright (style attributes too: the console sets styles through the CSSOM). Set on
// the raw response in onRequest so hijacked replies (event streams) and static files get them.
import type { FastifyReply, FastifyRequest } from 'fastify';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function securityHeaders(options: { https: boolean }): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    // frame-ancestors for browsers that predate it.
    'x-frame-options': 'DENY',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    ...(options.https ? { 'strict-transport-security': 'max-age=31536000' } : {}),
  };
}

export function securityHeadersHook(options: { https: boolean }) {
  const headers = Object.entries(securityHeaders(options));
  return async (_request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    for (const [name, value] of headers) reply.raw.setHeader(name, value);
  };
}
