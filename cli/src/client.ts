// A small client of the operator REST API (docs/operator-api.md): bearer key, JSON in and out,
// `{ error, code }` answers turned into ApiError (whose exit code follows the HTTP status).
import type { Page } from './api-types.js';
import { ApiError, CliError, EXIT } from './errors.js';

export type Query = Record<string, string | number | boolean | undefined | Array<string>>;

export const MAX_PAGE = 200;

export function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v) params.append(k, item);
    else params.append(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly apiKey: string,
  ) {}

  url(path: string, query?: Query): string {
    return `${this.baseUrl}/api/v1${path}${queryString(query)}`;
  }

  /** Sends a request and returns the raw response once it is known to be a success. */
  async raw(method: string, path: string, init: RequestInit & { query?: Query } = {}): Promise<Response> {
    const { query, headers, ...rest } = init;
    let res: Response;
    try {
      res = await fetch(this.url(path, query), {
        method,
        ...rest,
        headers: { authorization: `Bearer ${this.apiKey}`, accept: 'application/json', ...(headers as Record<string, string> | undefined) },
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, EXIT.ERROR);
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const hasBody = options.body !== undefined;
    const res = await this.raw(method, path, {
      ...(options.query ? { query: options.query } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...options.headers },
      ...(hasBody ? { body: JSON.stringify(options.body) } : {}),
    });
    const text = await res.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the server answered ${method} ${path} with something that is not JSON (HTTP ${res.status})`);
    }
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, query ? { query } : {});
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body === undefined ? {} : { body });
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** One page, or every page (`all`) gathered into one. */
  async list<T>(path: string, query: Query, paging: { limit?: number; offset?: number; all?: boolean }): Promise<Page<T>> {
    if (!paging.all) return this.get<Page<T>>(path, { ...query, limit: paging.limit, offset: paging.offset });
    const items: T[] = [];
    let offset = paging.offset ?? 0;
    for (;;) {
      const page = await this.get<Page<T>>(path, { ...query, limit: MAX_PAGE, offset });
      items.push(...page.items);
      offset += page.items.length;
      if (page.items.length === 0 || offset >= page.total) return { items, total: page.total, limit: items.length, offset: paging.offset ?? 0 };
    }
  }
}

/** Turns an error answer into an ApiError carrying the server's own message. */
export async function errorFrom(res: Response): Promise<ApiError> {
  let message = `HTTP ${res.status} ${res.statusText}`.trim();
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (typeof body.error === 'string' && body.error !== '') message = body.error;
    } catch {
      if (text.trim() !== '' && text.length < 500) message = text.trim();
    }
  } catch {
    // keep the status line
  }
  return new ApiError(res.status, message);
}

/** `fleet/name` path segments, each URL-encoded. */
export function seg(...parts: string[]): string {
  return parts.map((p) => `/${encodeURIComponent(p)}`).join('');
}
