// PostgreSQL's text cannot hold U+0000, which SQLite's holds (a function's source, an error message or a
// description may contain it). So every string the PostgreSQL store writes is escaped and every string it reads
// unescaped: U+0000 is stored as U+FFFF '0' and U+FFFF itself as U+FFFF U+FFFF. Text without either character
// (ids, names, timestamps, nearly all code; JSON, which escapes U+0000 itself) is stored as it is.
import {
  OperationNodeTransformer,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type PrimitiveValueListNode,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
  type ValueNode,
} from 'kysely';

const ESCAPE = '\uffff';
const NEEDS_ESCAPE = /[\0\uffff]/;

export function escapeText(text: string): string {
  return NEEDS_ESCAPE.test(text) ? text.replace(/[\0\uffff]/g, (c) => ESCAPE + (c === '\0' ? '0' : ESCAPE)) : text;
}

export function unescapeText(text: string): string {
  return text.includes(ESCAPE) ? text.replace(/\uffff([\s\S])/g, (_pair, c: string) => (c === '0' ? '\0' : ESCAPE)) : text;
}

/** A query parameter as stored: strings (also in arrays, as unnest takes them) escaped. */
export function escapeValue(value: unknown): unknown {
  if (typeof value === 'string') return escapeText(value);
  return Array.isArray(value) ? value.map(escapeValue) : value;
}

/** A row as read: its string columns unescaped. */
export function unescapeRow<R extends object>(row: R): R {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) out[column] = typeof value === 'string' ? unescapeText(value) : value;
  return out as R; // the same columns, strings mapped to strings
}

class EscapeValues extends OperationNodeTransformer {
  protected override transformValue(node: ValueNode): ValueNode {
    return typeof node.value === 'string' ? { ...node, value: escapeText(node.value) } : node;
  }

  protected override transformPrimitiveValueList(node: PrimitiveValueListNode): PrimitiveValueListNode {
    return { ...node, values: node.values.map(escapeValue) };
  }
}

/** The escaping for every query Kysely runs. */
export class EscapedTextPlugin implements KyselyPlugin {
  private readonly escape = new EscapeValues();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.escape.transformNode(args.node);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return { ...args.result, rows: args.result.rows.map(unescapeRow) };
  }
}
