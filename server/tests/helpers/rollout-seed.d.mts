import type { Strategy } from '../../src/rollouts/strategy.js';
import type { RolloutRecord, Store } from '../../src/store/index.js';
export declare function registerLabDevices(store: Pick<Store, 'registerDevice'>, n: number, trustDomain: string, now: string): Promise<string[]>;
export declare function insertModelArtifact(store: Pick<Store, 'insertArtifact'>, now: string): Promise<string>;
export declare function labModelRollout(
  artifactId: string,
  strategy: Strategy,
  createdBy: string,
): Pick<RolloutRecord, 'fleet' | 'artifactId' | 'artifactName' | 'group' | 'probe' | 'strategy' | 'createdBy'>;
export declare const quietLogger: import('../../src/rollouts/engine.js').EngineContext['logger'];
export declare function reportEveryStarted(
  store: Pick<Store, 'rollouts' | 'recordStatusReports'>,
  rolloutId: string,
  state: import('../../src/store/index.js').NewStatusReport['state'],
  now: string,
): Promise<void>;
