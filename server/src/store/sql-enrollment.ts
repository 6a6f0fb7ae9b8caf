// Enrollment tokens and the certificate log, for SqlStore. Writes that must go together
// (consume a use + create the device + log the certificate) are grouped by the caller under
// Store.withWriteLock; these methods are single statements.
import type { Db } from './db.js';
import { flatTable, num, str, strOrNull } from './sql-rows.js';
import type { CertificateReason, CertificateStore, DeviceCertificateRecord, EnrollmentTokenRecord, EnrollmentTokenStore } from './store.js';

const tokens = flatTable<EnrollmentTokenRecord>('enrollment_tokens', {
  id: str,
  tokenSha256: str,
  fleet: str,
  deviceName: strOrNull,
  usesTotal: num,
  usesLeft: num,
  createdAt: str,
  createdBy: str,
  expiresAt: str,
  revokedAt: strOrNull,
  revokedBy: strOrNull,
});

export class SqlEnrollmentTokens implements EnrollmentTokenStore {
  constructor(private readonly db: Db) {}

  async insert(t: EnrollmentTokenRecord): Promise<void> {
    await tokens.insert(this.db, t);
  }

  async get(id: string): Promise<EnrollmentTokenRecord | undefined> {
    const r = await this.db.get('SELECT * FROM enrollment_tokens WHERE id = ?', [id]);
    return r ? tokens.fromRow(r) : undefined;
  }

  async getByHash(tokenSha256: string): Promise<EnrollmentTokenRecord | undefined> {
    const r = await this.db.get('SELECT * FROM enrollment_tokens WHERE token_sha256 = ?', [tokenSha256]);
    return r ? tokens.fromRow(r) : undefined;
  }

  async list(filter: { fleet?: string } = {}): Promise<EnrollmentTokenRecord[]> {
    const rows =
      filter.fleet === undefined
        ? await this.db.all('SELECT * FROM enrollment_tokens ORDER BY created_at, rowid')
        : await this.db.all('SELECT * FROM enrollment_tokens WHERE fleet = ? ORDER BY created_at, rowid', [filter.fleet]);
    return rows.map(tokens.fromRow);
  }

  async revoke(id: string, now: string, actor: string): Promise<boolean> {
    const { changes } = await this.db.run('UPDATE enrollment_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL', [now, actor, id]);
    return changes === 1;
  }

  async consumeUse(id: string, now: string): Promise<boolean> {
    // The conditions repeat the caller's checks so that two enrollments racing for the last
    // use cannot both win: only one UPDATE sees uses_left > 0.
    const { changes } = await this.db.run('UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0 AND revoked_at IS NULL AND expires_at > ?', [
      id,
      now,
    ]);
    return changes === 1;
  }
}

const certificates = flatTable<DeviceCertificateRecord>('device_certificates', {
  serialNumber: str,
  deviceId: str,
  publicKeySha256: str,
  notBefore: str,
  notAfter: str,
  issuedAt: str,
  reason: (v) => str(v) as CertificateReason,
  enrollmentTokenId: strOrNull,
});

export class SqlCertificates implements CertificateStore {
  constructor(private readonly db: Db) {}

  async insert(c: DeviceCertificateRecord): Promise<void> {
    await certificates.insert(this.db, c);
  }

  async listForDevice(deviceId: string): Promise<DeviceCertificateRecord[]> {
    return (await this.db.all('SELECT * FROM device_certificates WHERE device_id = ? ORDER BY issued_at, rowid', [deviceId])).map(certificates.fromRow);
  }
}
