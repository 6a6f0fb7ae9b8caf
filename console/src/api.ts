// The REST API from the browser: the key lives in sessionStorage (gone when the tab closes).

import type { WhoAmI } from '@meshanics/cli/api-types';

export type { Page, WhoAmI } from '@meshanics/cli/api-types';

const KEY_STORAGE = 'meshanics.apiKey';
export const API_BASE = new URL('api/v1', document.baseURI).pathname.replace(/\/$/, '');

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export function storeKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

/** Called when the server says the key is no longer good (401). */
let onUnauthorized: (message: string) => void = () => {};
export function setUnauthorizedHandler(fn: (message: string) => void): void {
  onUnauthorized = fn;
}

type Query = Record<string, string | number | boolean | undefined | null>;

export function url(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== '') params.append(k, String(v));
  const qs = params.toString();
  return `${API_BASE}${path}${qs ? `?${qs}` : ''}`;
}

async function errorOf(res: Response): Promise<ApiError> {
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch {
    // keep the status
  }
  return new ApiError(res.status, message);
}

export async function request<T>(method: string, path: string, options: { query?: Query; body?: unknown; key?: string } = {}): Promise<T> {
  const key = options.key ?? storedKey();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let res: Response;
  try {
    res = await fetch(url(path, options.query), { method, headers, ...(body !== undefined ? { body } : {}) });
  } catch (err) {
    throw new ApiError(0, `cannot reach the server: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && options.key === undefined) onUnauthorized(err.message);
    throw err;
  }
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const api = {
  get: <T>(path: string, query?: Query) => request<T>('GET', path, query ? { query } : {}),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body === undefined ? {} : { body }),
  delete: <T>(path: string) => request<T>('DELETE', path),
};

/** Downloads an authenticated resource as a file (the key cannot ride on a plain link). */
export async function download(path: string, fallbackName: string): Promise<void> {
  const key = storedKey();
  const res = await fetch(url(path), { headers: key ? { authorization: `Bearer ${key}` } : {} });
  if (!res.ok) throw await errorOf(res);
  const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? fallbackName;
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export function seg(...parts: string[]): string {
  return parts.map((p) => `/${encodeURIComponent(p)}`).join('');
}

// --- permissions, as the server judges them: <area>.<level>, read < write < manage

const LEVELS = ['read', 'write', 'manage'];

export function can(me: WhoAmI | null, permission: string): boolean {
  if (!me) return false;
  if (permission === 'approve') return me.approve;
  const [area, level] = permission.split('.') as [string, string];
  const needed = LEVELS.indexOf(level);
  return me.permissions.some((p) => {
    const [a, l] = p.split('.') as [string, string];
    return a === area && LEVELS.indexOf(l) >= needed;
  });
}
