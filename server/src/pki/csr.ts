// Reading a device's PKCS#10 CSR. Only its public key is used: the identity comes from the
// enrollment token (or, on renewal, the current certificate), never from what the CSR asks for.
// The CSR signature is what proves the requester holds the private key (proof of possession).
import * as crypto from 'node:crypto';
import { MeshError } from '../errors.js';
import { deviceKeyType, x509, type DeviceKeyType } from './x509.js';

export interface VerifiedCsr {
  publicKey: crypto.KeyObject;
  keyType: DeviceKeyType;
}

const PEM_CSR = /^\s*-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\s*$/;

/**
 * Parses a PEM CSR, verifies its self-signature and checks its key type, in that order.
 * Refusals: MESH_ERR_ENROLL_CSR_INVALID, MESH_ERR_ENROLL_CSR_SIGNATURE, MESH_ERR_ENROLL_UNSUPPORTED_KEY.
 */
export async function verifyCsr(pem: string): Promise<VerifiedCsr> {
  // One PEM block and nothing else: a bundle of several would leave "which one?" to the parser.
  if (!PEM_CSR.test(pem)) {
    throw new MeshError('MESH_ERR_ENROLL_CSR_INVALID', 'csr must be one PEM "CERTIFICATE REQUEST" block (PKCS#10)');
  }
  let csr: x509.Pkcs10CertificateRequest;
  let publicKey: crypto.KeyObject;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
    publicKey = crypto.createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw new MeshError('MESH_ERR_ENROLL_CSR_INVALID', `csr cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
  const keyType = deviceKeyType(publicKey);
  let verified: boolean;
  try {
    verified = await csr.verify();
  } catch (err) {
    // WebCrypto cannot even try (e.g. an RSA-PSS or DSA key): report the key, the real problem.
    if (!keyType) throw unsupported(publicKey);
    throw new MeshError('MESH_ERR_ENROLL_CSR_SIGNATURE', `csr signature cannot be verified: ${(err as Error).message}`, { cause: err });
  }
  if (!verified) {
    throw new MeshError('MESH_ERR_ENROLL_CSR_SIGNATURE', 'csr signature does not verify with the public key it carries (proof of possession failed)');
  }
  if (!keyType) throw unsupported(publicKey);
  return { publicKey, keyType };
}

function unsupported(key: crypto.KeyObject): MeshError {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return new MeshError(
    'MESH_ERR_ENROLL_UNSUPPORTED_KEY',
    `csr key is ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` ${curve}` : ''}; devices must use ECDSA P-256, ECDSA P-384 or Ed25519`,
  );
}
