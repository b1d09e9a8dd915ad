// Minimal RFC 4180 CSV reading/writing (what pandas.read_csv / to_csv produce by default):
// comma separator, double-quoted fields with "" escapes and embedded newlines, CRLF or LF,
// blank lines skipped, a leading UTF-8 BOM ignored.

export interface CsvTable {
  header: string[];
  /** Data rows; each has header.length fields (short rows are padded with ''). */
  rows: string[][];
  /** 1-based line of the file where each data row starts (for error messages). */
  lines: number[];
}

export function parseCsv(text: string, source = '<csv>'): CsvTable {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const records: string[][] = [];
  const starts: number[] = [];
  let field = '', record: string[] = [], line = 1, recordLine = 1, inQuotes = false, fieldStarted = false;
  const endRecord = () => {
    record.push(field);
    // pandas skips blank lines
    if (!(record.length === 1 && record[0] === '' && !fieldStarted)) {
      records.push(record);
      starts.push(recordLine);
    }
    record = [];
    field = '';
    fieldStarted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && field === '') {
      inQuotes = true;
      fieldStarted = true;
    } else if (ch === ',') {
      record.push(field);
      field = '';
      fieldStarted = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
      fieldStarted = true;
    }
  }
  if (inQuotes) throw new Error(`parseCsv: ${source}: unterminated quoted field in the row starting at line ${recordLine}`);
  if (field !== '' || record.length > 0 || fieldStarted) endRecord();
  if (records.length === 0) throw new Error(`parseCsv: ${source} is empty (no header row)`);
  const header = records[0].map((h) => h.trim());
  const rows: string[][] = [];
  for (let r = 1; r < records.length; r++) {
    const rec = records[r];
    if (rec.length > header.length) {
      throw new Error(`parseCsv: ${source} row ${r} (line ${starts[r]}) has ${rec.length} fields, the header has ${header.length}`);
    }
    while (rec.length < header.length) rec.push('');
    rows.push(rec);
  }
  return { header, rows, lines: starts.slice(1) };
}

/** Index of a column, or an error naming the file and the columns it has. */
export function csvColumn(table: CsvTable, name: string, source: string): number {
  const i = table.header.indexOf(name);
  if (i < 0) throw new Error(`${source}: missing column "${name}" (columns: ${table.header.join(', ') || 'none'})`);
  return i;
}

function quoteField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function writeCsv(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return [header, ...rows].map((r) => r.map(quoteField).join(',')).join('\n') + '\n';
}
