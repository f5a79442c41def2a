/**
 * A small RFC 4180 CSV reader for workload files: quoted fields (with "" escapes, commas and
 * line breaks inside quotes), CRLF or LF line ends, an optional UTF-8 BOM. Each record keeps
 * the line number it starts on, so a bad row can be reported as file:line.
 */
import { checkNoDuplicates } from '../../validation/patterns';

export class CsvFormatError extends Error {
  constructor(
    readonly file: string,
    /** 1-based line number in the file (the header is line 1). */
    readonly line: number,
    detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
    this.name = 'CsvFormatError';
  }
}

export interface CsvRecord {
  /** 1-based line the record starts on. */
  line: number;
  fields: string[];
}

export interface CsvTable {
  header: string[];
  /** Data rows; each has exactly header.length fields (checked). */
  rows: CsvRecord[];
}

/** Splits `text` into records. `file` only names the source in errors. */
export function parseCsvRecords(text: string, file: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let inQuotes = false;
  let quoteLine = 1;
  // True once the current field was a quoted one: only a separator or line end may follow.
  let afterQuote = false;

  const endRecord = (): void => {
    fields.push(field);
    // A line with nothing on it is not a record (blank lines, the trailing newline).
    if (!(fields.length === 1 && fields[0] === '' && !afterQuote)) records.push({ line: recordLine, fields });
    fields = [];
    field = '';
    afterQuote = false;
  };

  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (inQuotes) {
      if (ch === '"') {
        if (body[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
          afterQuote = true;
        }
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === ',') {
      fields.push(field);
      field = '';
      afterQuote = false;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && body[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else if (ch === '"' && field === '' && !afterQuote) {
      inQuotes = true;
      quoteLine = line;
    } else if (afterQuote) {
      throw new CsvFormatError(file, line, `unexpected character ${JSON.stringify(ch)} after a closing quote`);
    } else if (ch === '"') {
      throw new CsvFormatError(file, line, 'a quote inside an unquoted field (quote the whole field and double the quote)');
    } else {
      field += ch;
    }
  }
  if (inQuotes) throw new CsvFormatError(file, quoteLine, 'unterminated quoted field');
  if (field !== '' || fields.length > 0 || afterQuote) endRecord();
  return records;
}

/** Parses a CSV with a header row; every data row must have as many fields as the header. */
export function parseCsvTable(text: string, file: string): CsvTable {
  const [headerRecord, ...rows] = parseCsvRecords(text, file);
  if (headerRecord === undefined) throw new CsvFormatError(file, 1, 'empty file: expected a header row');
  const header = headerRecord.fields.map((name) => name.trim());
  checkNoDuplicates(`CSV header of ${file}`, header);
  for (const row of rows) {
    if (row.fields.length !== header.length) {
      throw new CsvFormatError(file, row.line, `expected ${header.length} fields (as in the header), got ${row.fields.length}`);
    }
  }
  return { header, rows };
}
