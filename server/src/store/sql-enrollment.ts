// Enrollment tokens and the certificate log, for SqlStore. Writes that must go together
// (consume a use + create the device + log the certificate) are grouped by the caller under
// Store.withWriteLock; these methods are single statements.
import type { Db } from './db.js';
import { num, str, strOrNull, type Row } from './sql-rows.js';
import type {
  CertificateReason,
  CertificateStore,
  DeviceCertificateRecord,
  EnrollmentTokenRecord,
  EnrollmentTokenStore,
} from './store.js';

function tokenFromRow(r: Row): EnrollmentTokenRecord {
  return {
    id: str(r.id),
    tokenSha256: str(r.token_sha256),
    fleet: str(r.fleet),
    deviceName: strOrNull(r.device_name),
    usesTotal: num(r.uses_total),
    usesLeft: num(r.uses_left),
    createdAt: str(r.created_at),
    createdBy: str(r.created_by),
    expiresAt: str(r.expires_at),
    revokedAt: strOrNull(r.revoked_at),
    revokedBy: strOrNull(r.revoked_by),
  };
}

export class SqlEnrollmentTokens implements EnrollmentTokenStore {
  constructor(private readonly db: Db) {}

  async insert(t: EnrollmentTokenRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO enrollment_tokens (id, token_sha256, fleet, device_name, uses_total, uses_left, created_at, created_by, expires_at, revoked_at, revoked_by)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [t.id, t.tokenSha256, t.fleet, t.deviceName, t.usesTotal, t.usesLeft, t.createdAt, t.createdBy, t.expiresAt, t.revokedAt, t.revokedBy],
    );
  }

  async get(id: string): Promise<EnrollmentTokenRecord | undefined> {
    const r = await this.db.get('SELECT * FROM enrollment_tokens WHERE id = ?', [id]);
    return r ? tokenFromRow(r) : undefined;
  }

  async getByHash(tokenSha256: string): Promise<EnrollmentTokenRecord | undefined> {
    const r = await this.db.get('SELECT * FROM enrollment_tokens WHERE token_sha256 = ?', [tokenSha256]);
    return r ? tokenFromRow(r) : undefined;
  }

  async list(filter: { fleet?: string } = {}): Promise<EnrollmentTokenRecord[]> {
    const rows =
      filter.fleet === undefined
        ? await this.db.all('SELECT * FROM enrollment_tokens ORDER BY created_at, rowid')
        : await this.db.all('SELECT * FROM enrollment_tokens WHERE fleet = ? ORDER BY created_at, rowid', [filter.fleet]);
    return rows.map(tokenFromRow);
  }

  async revoke(id: string, now: string, actor: string): Promise<boolean> {
    const { changes } = await this.db.run('UPDATE enrollment_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL', [
      now,
      actor,
      id,
    ]);
    return changes === 1;
  }

  async consumeUse(id: string, now: string): Promise<boolean> {
    // The conditions repeat the caller's checks so that two enrollments racing for the last
    // use cannot both win: only one UPDATE sees uses_left > 0.
    const { changes } = await this.db.run(
      'UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0 AND revoked_at IS NULL AND expires_at > ?',
      [id, now],
    );
    return changes === 1;
  }
}

function certificateFromRow(r: Row): DeviceCertificateRecord {
  return {
    serialNumber: str(r.serial_number),
    deviceId: str(r.device_id),
    publicKeySha256: str(r.public_key_sha256),
    notBefore: str(r.not_before),
    notAfter: str(r.not_after),
    issuedAt: str(r.issued_at),
    reason: str(r.reason) as CertificateReason,
    enrollmentTokenId: strOrNull(r.enrollment_token_id),
  };
}

export class SqlCertificates implements CertificateStore {
  constructor(private readonly db: Db) {}

  async insert(c: DeviceCertificateRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO device_certificates (serial_number, device_id, public_key_sha256, not_before, not_after, issued_at, reason, enrollment_token_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [c.serialNumber, c.deviceId, c.publicKeySha256, c.notBefore, c.notAfter, c.issuedAt, c.reason, c.enrollmentTokenId],
    );
  }

  async listForDevice(deviceId: string): Promise<DeviceCertificateRecord[]> {
    return (await this.db.all('SELECT * FROM device_certificates WHERE device_id = ? ORDER BY issued_at, rowid', [deviceId])).map(certificateFromRow);
  }
}
