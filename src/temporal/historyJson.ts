/**
 * History ⇄ JSON for replay fixtures, through the proto classes' own toObject/fromObject.
 * (The SDK's historyToJSON/historyFromJSON fail in this install: npm keeps two copies of
 * protobufjs 8 beside grpc's protobufjs 7, and protojson's instanceof check sees the other copy.)
 */
import { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;
const HistoryType = temporal.api.history.v1.History;

export function historyToJson(history: History): string {
  return JSON.stringify(HistoryType.toObject(HistoryType.fromObject(history), { longs: String, enums: String, bytes: String }));
}

export function historyFromJson(text: string): temporal.api.history.v1.History {
  return HistoryType.fromObject(JSON.parse(text));
}
