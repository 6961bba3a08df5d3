/**
 * Extracts addr-specs from RFC 5322 address headers (From, Sender, To, Cc): display
 * names, quoted strings, nested comments and groups are understood, so
 * `"Doe, John" (work) <john@example.org>` yields john@example.org and never "Doe".
 */

/** Removes comments and splits at top-level commas, keeping quoted strings intact. */
function splitAddressList(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let depth = 0; // comment nesting
  let quoted = false;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && (quoted || depth > 0)) {
      if (depth === 0) current += ch + (value[i + 1] ?? '');
      i++;
      continue;
    }
    if (depth > 0) {
      if (ch === '(') depth++;
      else if (ch === ')') depth--;
      continue;
    }
    if (quoted) {
      current += ch;
      if (ch === '"') quoted = false;
      continue;
    }
    switch (ch) {
      case '(': depth = 1; current += ' '; break;
      case '"': quoted = true; current += ch; break;
      case '<': angle = true; current += ch; break;
      case '>': angle = false; current += ch; break;
      case ':':
        // "group-name:" starts a group: what came before is a display name, not an address.
        if (!angle) current = '';
        else current += ch;
        break;
      case ';': if (!angle) { out.push(current); current = ''; } else current += ch; break;
      case ',': if (!angle) { out.push(current); current = ''; } else current += ch; break;
      default: current += ch;
    }
  }
  out.push(current);
  return out;
}

function unquoteLocalPart(addr: string): string {
  const at = addr.lastIndexOf('@');
  if (at < 0) return addr;
  const local = addr.slice(0, at);
  const m = local.match(/^"((?:[^"\\]|\\.)*)"$/);
  return (m ? m[1].replace(/\\(.)/g, '$1') : local) + addr.slice(at);
}

/** Every address in an address-list header value, without display names. */
export function parseAddressList(value: string | undefined): string[] {
  if (!value) return [];
  const out: string[] = [];
  for (const item of splitAddressList(value)) {
    const angled = item.match(/<([^<>]*)>/);
    let spec = (angled ? angled[1] : item).trim();
    spec = spec.replace(/^@[^:]*:/, ''); // obsolete source route
    spec = spec.replace(/\s+(?=(?:[^"]*"[^"]*")*[^"]*$)/g, ''); // CFWS outside quotes
    if (spec.includes('@')) out.push(unquoteLocalPart(spec));
  }
  return out;
}
