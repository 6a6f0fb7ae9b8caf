// A multipart/form-data upload streamed from disk: the fields first (the server judges them
// before it stores a byte), then the file, read in chunks as fetch pulls them, with the exact
// Content-Length and a progress callback.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { bar, bytes } from './output.js';

const CHUNK = 1024 * 1024;

export interface MultipartUpload {
  body: ReadableStream<Uint8Array>;
  contentType: string;
  length: number;
}

function quoted(s: string): string {
  // As browsers encode form-data names (WHATWG HTML: CR, LF and " percent-encoded).
  return s.replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22');
}

export async function multipartFromFile(
  fields: Array<[string, string]>,
  file: { field: string; path: string; fileName: string; contentType?: string },
  onProgress: (sent: number, total: number) => void = () => {},
): Promise<MultipartUpload> {
  const boundary = `----meshanics-${randomBytes(12).toString('hex')}`;
  const enc = new TextEncoder();
  const head = enc.encode(
    fields.map(([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"\r\n\r\n${value}\r\n`).join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="${quoted(file.field)}"; filename="${quoted(file.fileName)}"\r\n` +
      `Content-Type: ${file.contentType ?? 'application/octet-stream'}\r\n\r\n`,
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const handle = await fs.open(file.path, 'r');
  const size = (await handle.stat()).size;
  let sent = 0;
  let stage: 'head' | 'file' | 'tail' | 'done' = 'head';
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (stage === 'head') {
          stage = 'file';
          controller.enqueue(head);
          return;
        }
        if (stage === 'file') {
          const buf = new Uint8Array(CHUNK);
          const { bytesRead } = await handle.read(buf, 0, CHUNK, null);
          if (bytesRead > 0) {
            sent += bytesRead;
            onProgress(sent, size);
            controller.enqueue(buf.subarray(0, bytesRead));
            return;
          }
          if (sent !== size) throw new Error(`${file.path} changed size while it was uploaded (${sent} of ${size} bytes)`);
          stage = 'tail';
          await handle.close();
          controller.enqueue(tail);
          return;
        }
        stage = 'done';
        controller.close();
      } catch (err) {
        await handle.close().catch(() => {});
        controller.error(err);
      }
    },
    async cancel() {
      await handle.close().catch(() => {});
    },
  });
  return { body, contentType: `multipart/form-data; boundary=${boundary}`, length: head.length + size + tail.length };
}

/** A one-line progress bar redrawn on a terminal at most ten times a second. */
export function progressBar(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }, label: string) {
  const started = Date.now();
  let last = 0;
  let drawn = false;
  const draw = (done: number, total: number) => {
    const seconds = Math.max(0.001, (Date.now() - started) / 1000);
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    const text = `${label} ${bar(done, total, 16)} ${String(pct).padStart(3)}% ${bytes(done)} / ${bytes(total)} ${bytes(Math.round(done / seconds))}/s`;
    stream.write(`\r${text.slice(0, (stream.columns ?? 120) - 1)}\u001b[K`);
    drawn = true;
  };
  return {
    update(done: number, total: number) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done, total);
    },
    finish(message?: string) {
      if (drawn) stream.write('\r\u001b[K');
      if (message) stream.write(`${message}\n`);
    },
  };
}
