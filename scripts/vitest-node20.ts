// vitest 5.1's failure summary calls Map.groupBy, which Node 20 lacks: without this, a
// failing test prints "Map.groupBy is not a function" instead of the failure. Each
// package's vitest.config.ts imports this file, so it runs in vitest's main process.
const mapCtor = Map as unknown as { groupBy?: unknown };
if (typeof mapCtor.groupBy !== "function") {
  mapCtor.groupBy = <K, V>(items: Iterable<V>, key: (item: V, index: number) => K): Map<K, V[]> => {
    const out = new Map<K, V[]>();
    let i = 0;
    for (const item of items) {
      const k = key(item, i++);
      const list = out.get(k);
      if (list) list.push(item);
      else out.set(k, [item]);
    }
    return out;
  };
}
const objectCtor = Object as unknown as { groupBy?: unknown };
if (typeof objectCtor.groupBy !== "function") {
  objectCtor.groupBy = <V>(items: Iterable<V>, key: (item: V, index: number) => PropertyKey) => {
    const out: Record<PropertyKey, V[]> = Object.create(null);
    let i = 0;
    for (const item of items) (out[key(item, i++)] ??= []).push(item);
    return out;
  };
}
export {};
