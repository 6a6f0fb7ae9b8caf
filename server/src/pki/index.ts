export { type DeviceCa, type DeviceCaFiles, generateDeviceCa, loadDeviceCa, writeDeviceCaIfMissing } from './device-ca.js';
export {
  DEFAULT_DEVICE_CERT_DAYS,
  MAX_DEVICE_CERT_DAYS,
  type CertificateValidity,
  type IssuedCertificate,
  issueDeviceCertificate,
} from './device-certificate.js';
export { ensureServerCertificate, generateServerCertificate, type ServerTlsMaterial } from './server-certificate.js';
export { deviceFromCertificate, type PeerDevice } from './peer-identity.js';
export { verifyCsr, type VerifiedCsr } from './csr.js';
export { deviceKeyType, generateP256KeyPair, spkiSha256, type DeviceKeyType } from './x509.js';
