// Certificate renewal over the device's own mTLS identity: at two thirds of the lifetime
// the agent makes a NEW key pair, sends a CSR to the enrollment endpoint authenticated by
// its current certificate, and switches to the new pair in one rename. An expired
// certificate cannot renew (the TLS layer refuses it): such a device must enroll again.
import { promises as fs } from 'node:fs';
import type { Logger } from 'pino';
import { MeshError } from '../errors.js';
import type { DeviceTlsMaterial } from '../transport/tls.js';
import { certificateValidity, generateKeyAndCsr, renewalDueAt } from './csr.js';
import { postJson, type EnrollmentResponse } from './enrollment-client.js';
import { installRenewed, type EnrolledIdentity } from './identity-store.js';

export class CertificateRenewer {
  readonly #dataDir: string;
  readonly #identity: EnrolledIdentity;
  readonly #log: Logger;
  #retryAfter = 0;
  #failures = 0;

  constructor(dataDir: string, identity: EnrolledIdentity, log: Logger) {
    this.#dataDir = dataDir;
    this.#identity = identity;
    this.#log = log;
  }

  async #material(): Promise<DeviceTlsMaterial> {
    const { certPath, keyPath, caPath } = this.#identity;
    return { cert: await fs.readFile(certPath), key: await fs.readFile(keyPath), ca: await fs.readFile(caPath) };
  }

  /** Renews when due; returns the new material, or undefined when nothing changed. */
  async renewIfDue(now = Date.now()): Promise<DeviceTlsMaterial | undefined> {
    if (now < this.#retryAfter) return undefined;
    const current = await this.#material();
    const { notAfter } = certificateValidity(current.cert);
    if (now < renewalDueAt(current.cert).getTime()) return undefined;
    if (now >= notAfter.getTime()) {
      throw new MeshError('MESH_ERR_IDENTITY_MISSING', `the device certificate expired at ${notAfter.toISOString()}; enroll again`);
    }
    const { enrollment } = this.#identity;
    let response: EnrollmentResponse;
    try {
      const { privateKeyPem, csrPem } = await generateKeyAndCsr(enrollment.name);
      response = await postJson<EnrollmentResponse>({
        url: new URL('/enroll/v1/renew', enrollment.enrollUrl).toString(),
        ca: current.ca,
        body: { csr: csrPem },
        clientCert: { cert: current.cert, key: current.key },
      });
      await installRenewed(this.#dataDir, privateKeyPem, response);
    } catch (err) {
      this.#failures += 1;
      this.#retryAfter = now + Math.min(5_000 * 2 ** this.#failures, 10 * 60_000);
      this.#log.warn({ err: (err as Error).message, failures: this.#failures }, 'certificate renewal failed; will retry');
      return undefined;
    }
    this.#failures = 0;
    this.#log.info({ notAfter: response.notAfter }, 'device certificate renewed with a new key pair');
    // After the try: the new identity is installed, so failing to read it back is the caller's
    // error (as at the top), not a failed renewal to retry with yet another key pair.
    return this.#material();
  }
}
