/** A map kept to its newest entries: the store's caches and the gpu-node worker's kept shard outcomes. */

/** Sets `key` as the newest entry of `map`, then drops the oldest entries beyond `limit`. */
export function keepNewest<K, V>(map: Map<K, V>, key: K, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= limit) break;
    map.delete(oldest);
  }
}
