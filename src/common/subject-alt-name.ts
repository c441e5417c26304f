/**
 * Parse node's subjectAltName text ("DNS:a, URI:spiffe://td/x, IP Address:127.0.0.1"). Node quotes a
 * value containing separators as a JSON string (`URI:"a, URI:b"`, CVE-2021-44532), so a crafted SAN
 * cannot smuggle a second entry: quoted values are decoded, never split.
 */
export function parseSubjectAltName(text: string): Array<[type: string, value: string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) break;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 2);
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      end += 1;
    } else {
      end = text.indexOf(', ', colon + 1);
      if (end === -1) end = text.length;
      value = text.slice(colon + 1, end);
    }
    out.push([type, value]);
    i = end + 2;
  }
  return out;
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  throw new Error('unterminated quoted subjectAltName value');
}

/** The values of the SAN entries of these types ("URI", "DNS", "IP Address"), through the one safe parser. */
export function subjectAltNames(text: string | undefined, types: readonly string[]): string[] {
  let entries: Array<[string, string]>;
  try {
    entries = parseSubjectAltName(text ?? '');
  } catch {
    // Malformed text (node never writes it): no name can be trusted from it.
    return [];
  }
  return entries.filter(([type]) => types.includes(type)).map(([, value]) => value);
}
