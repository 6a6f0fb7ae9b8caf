import { AsyncSeriesBailHook, AsyncSeriesHook, HookMap } from 'tapable';
import type { ArtifactContext, ProbeAttemptContext, ProbeResult, RollbackContext, TransitionEvent, ValidationContext } from './plugin.js';

/** Every stage of an artifact's life, in pipeline order. */
export const ARTIFACT_STAGES = ['download', 'verify', 'apply', 'rollback', 'cleanup'] as const;
export type ArtifactStage = (typeof ARTIFACT_STAGES)[number];

export function createHooks() {
  return Object.freeze({
    /**
     * Before anything is downloaded (the spec: "the device re-validates every instruction it
     * receives"): a plugin checks what the spec asks of the device against `agent.allowlist` and
     * throws to refuse. The assignment then ends FAILED with nothing fetched or touched.
     */
    validate: new HookMap((_kind: string) => new AsyncSeriesHook<[ValidationContext]>(['context'])),
    /** The same for a probe, keyed by probe type; `spec` is the probe's spec. */
    validateProbe: new HookMap((_type: string) => new AsyncSeriesHook<[ValidationContext]>(['context'])),
    /** After the TUF target is on disk; a plugin fetches anything else it needs (an image). */
    download: new HookMap((_kind: string) => new AsyncSeriesHook<[ArtifactContext]>(['context'])),
    /** After core verified the target against TUF and the expected digest; kind-specific checks. */
    verify: new HookMap((_kind: string) => new AsyncSeriesHook<[ArtifactContext]>(['context'])),
    /** Put the verified artifact live. Back up first; checkpoint what rollback must know. */
    apply: new HookMap((_kind: string) => new AsyncSeriesHook<[ArtifactContext]>(['context'])),
    /** Make the previous version live again. Must be idempotent (it may run again after a crash). */
    rollback: new HookMap((_kind: string) => new AsyncSeriesHook<[RollbackContext]>(['context'])),
    /** Always runs last, whatever the outcome: remove leftovers, keep current and previous. */
    cleanup: new HookMap((_kind: string) => new AsyncSeriesHook<[ArtifactContext]>(['context'])),
    /** One probe attempt, keyed by probe type; a bail hook: the first result answers. */
    probe: new HookMap((_type: string) => new AsyncSeriesBailHook<[ProbeAttemptContext], ProbeResult | undefined>(['context'])),
    /** Observers of every state transition, after it was persisted (the status reporter is one). */
    transition: new AsyncSeriesHook<[TransitionEvent]>(['event']),
  });
}

export type AgentHooks = ReturnType<typeof createHooks>;
