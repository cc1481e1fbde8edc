// Zips written byte by byte, for the cases no zip library writes: names that escape, lying sizes, local headers
// that disagree with the central directory, encryption flags, odd compression methods, more entries than allowed.
import { crc32, deflateRawSync } from 'node:zlib';

export interface RawEntry {
  name: string | Buffer;
  /** The entry's content; deflated unless `method` says otherwise. */
  data?: Buffer;
  /** 0 stored, 8 deflate (the default for non-empty or raw data); any other is written as given, over `rawData`. */
  method?: number;
  /** Bytes written as the entry's data in place of its stored or deflated content. */
  rawData?: Buffer;
  /** Declared uncompressed size (a lie if it is not the data's). */
  size?: number;
  crc?: number;
  flags?: number;
  /** Unix mode (the high 16 bits of the external attributes, made on unix). */
  mode?: number;
  /** Differences in the local header only. */
  local?: { name?: string; method?: number; flags?: number; size?: number };
}

/** A zip of `entries`, in order: local headers and data, then the central directory and its end record. */
export function rawZip(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const data = entry.data ?? Buffer.alloc(0);
    const method = entry.method ?? (data.length > 0 || entry.rawData ? 8 : 0);
    const payload = entry.rawData ?? (method === 8 ? deflateRawSync(data) : data);
    const size = entry.size ?? data.length;
    const crc = entry.crc ?? crc32(data);
    const flags = entry.flags ?? 0x800;
    const localName = entry.local?.name === undefined ? name : Buffer.from(entry.local.name);

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(entry.local?.flags ?? flags, 6);
    local.writeUInt16LE(entry.local?.method ?? method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(payload.length, 18);
    local.writeUInt32LE(entry.local?.size ?? size, 22);
    local.writeUInt16LE(localName.length, 26);
    parts.push(local, localName, payload);

    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE((3 << 8) | 20, 4); // made by unix
    header.writeUInt16LE(20, 6);
    header.writeUInt16LE(flags, 8);
    header.writeUInt16LE(method, 10);
    header.writeUInt32LE(crc, 16);
    header.writeUInt32LE(payload.length, 20);
    header.writeUInt32LE(size, 24);
    header.writeUInt16LE(name.length, 28);
    header.writeUInt32LE(((entry.mode ?? 0o100644) << 16) >>> 0, 38);
    header.writeUInt32LE(offset, 42);
    central.push(header, name);
    offset += local.length + localName.length + payload.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}
