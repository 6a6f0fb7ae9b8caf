// pki/ owns certificates: the device CA (device-ca.ts), device certificates (device-certificate.ts), the server's TLS
// certificate (server-certificate.ts), CSRs (csr.ts), the device a verified peer certificate names (peer-identity.ts)
// and the one place @peculiar/x509 is loaded (x509.ts).
// May import: @peculiar/x509, config/atomic-file.ts, config/defaults.ts, ../errors.ts, @meshanics/core/contract.
// Nothing else of the server.

export { type DeviceCa, type DeviceCaFiles, generateDeviceCa, loadDeviceCa, writeDeviceCaIfMissing } from './device-ca.js';
export {
  DEFAULT_DEVICE_CERT_DAYS,
  MAX_DEVICE_CERT_DAYS,
  type CertificateValidity,
  type IssuedCertificate,
  issueDeviceCertificate,
  issuedCertificateRecord,
} from './device-certificate.js';
export { ensureServerCertificate, generateServerCertificate, type ServerTlsMaterial } from './server-certificate.js';
export { deviceFromCertificate, type PeerDevice } from './peer-identity.js';
export { verifyCsr, type VerifiedCsr } from './csr.js';
export { deviceKeyType, generateP256KeyPair, spkiSha256, type DeviceKeyType } from './x509.js';
