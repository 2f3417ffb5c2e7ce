/**
 * Load through a load balancer for the balancer tests: clients that each consume one token
 * per request, in a loop, over keep-alive connections, and count what they were answered.
 */
export interface BalancerLoad {
  /** Stops the clients and resolves with every outcome (status, or the error) and its count. */
  stop(): Promise<Map<string, number>>;
  /** Per client key: consumes answered 200. */
  readonly allowed: Map<string, number>;
  /** Outcomes other than 200 and 429, with when they came (performance.now()). */
  readonly failures: { at: number; outcome: string }[];
}

export function consumeThrough(balancer: string, keys: readonly string[]): BalancerLoad {
  const outcomes = new Map<string, number>();
  const allowed = new Map(keys.map((key) => [key, 0]));
  const failures: { at: number; outcome: string }[] = [];
  let running = true;
  const clients = keys.map(async (key) => {
    while (running) {
      let outcome: string;
      try {
        const response = await fetch(`${balancer}/v1/quota/consume`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: '{"cost":1,"amounts":{"tokens":1}}',
        });
        outcome = String(response.status);
        const text = await response.text();
        if (response.status === 200) allowed.set(key, allowed.get(key)! + 1);
        else if (response.status !== 429) outcome += ` ${text.slice(0, 120)}`;
      } catch (error) {
        outcome = `error ${(error as Error).cause ?? (error as Error).message}`;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      if (!outcome.startsWith('200') && !outcome.startsWith('429')) failures.push({ at: performance.now(), outcome });
    }
  });
  return {
    allowed,
    failures,
    async stop() {
      running = false;
      await Promise.all(clients);
      return outcomes;
    },
  };
}
