// Where the device's TUF trust state lives on disk, for the code that reads it and the code
// that wipes it (offboarding): one answer for both.

/** The last verified root of the trust state in `metadataDir`, kept beside it (tuf-target-source.ts). */
export function lastGoodRootFile(metadataDir: string): string {
  return `${metadataDir}.root-last-good.json`;
}
