/**
 * A small INI reader for cstp.ini. Haraka's own reader coerces values by guessing and forgets where a value came
 * from; this one keeps every value as the string the admin wrote plus its line, so that validation can say exactly
 * which key is wrong and what it held.
 */

export interface IniValue {
  value: string;
  line: number;
}

/** section name -> key -> value; keys before any [section] land in section "main", as in Haraka. */
export type IniDocument = Map<string, Map<string, IniValue>>;

export class IniSyntaxError extends Error {
  constructor(readonly line: number, reason: string) {
    super(`line ${line}: ${reason}`);
    this.name = 'IniSyntaxError';
  }
}

const SECTION = /^\[([A-Za-z0-9_.-]+)\]$/;
const ENTRY = /^([A-Za-z0-9_.-]+)\s*=\s*(.*)$/;

export function parseIni(text: string): IniDocument {
  const doc: IniDocument = new Map();
  let current = 'main';
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const content = stripComment(raw).trim();
    if (content === '') return;
    const header = SECTION.exec(content);
    if (header) {
      current = header[1];
      sectionOf(doc, current);
      return;
    }
    const entry = ENTRY.exec(content);
    if (!entry) throw new IniSyntaxError(line, `expected "[section]" or "key = value", got "${content}"`);
    const section = sectionOf(doc, current);
    if (section.has(entry[1])) throw new IniSyntaxError(line, `key ${entry[1]} is set twice`);
    section.set(entry[1], { value: entry[2].trim(), line });
  });
  return doc;
}

function sectionOf(doc: IniDocument, name: string): Map<string, IniValue> {
  let section = doc.get(name);
  if (!section) {
    section = new Map();
    doc.set(name, section);
  }
  return section;
}

/** A comment starts a line with ";" or "#", or follows a value after whitespace (values never contain " ;"). */
function stripComment(line: string): string {
  if (/^\s*[;#]/.test(line)) return '';
  return line.replace(/\s+[;#].*$/, '');
}
