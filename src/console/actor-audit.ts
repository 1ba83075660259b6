/**
 * Who acted, on every record a console call writes. The console runs each use case inside
 * `ActorScope.run(actor, ...)`; the audit sink built by `withActor` adds `actor: {type: "human",
 * sub, email}` to every record written within it, from any depth of the call (the decision, the
 * refusal, each lease a revocation ended), without the use cases knowing who is at the console.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditEventInput, AuditRecord, AuditSink } from '../audit/types.js';
import type { HumanIdentity } from '../identity/types.js';

export interface HumanActor {
  type: 'human';
  sub: string;
  email: string;
}

export function humanActor(human: HumanIdentity): HumanActor {
  return { type: 'human', sub: human.sub, email: human.email };
}

export class ActorScope {
  private readonly storage = new AsyncLocalStorage<HumanActor>();

  run<T>(actor: HumanActor, fn: () => Promise<T>): Promise<T> {
    return this.storage.run(actor, fn);
  }

  current(): HumanActor | undefined {
    return this.storage.getStore();
  }
}

/** `sink`, with the acting person added to each record written inside `scope.run`. */
export function withActor(sink: AuditSink, scope: ActorScope): AuditSink {
  const wrapped: AuditSink = {
    write(event: AuditEventInput): Promise<AuditRecord> {
      const actor = scope.current();
      return sink.write(actor && event.actor === undefined ? { ...event, actor } : event);
    },
    close: () => sink.close(),
  };
  const health = sink.health?.bind(sink);
  if (health) wrapped.health = health;
  return wrapped;
}
