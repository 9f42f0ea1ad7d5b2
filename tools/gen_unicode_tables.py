#!/usr/bin/env python3
"""Generates the Unicode data the tokenizer needs, as compact C tables, into abc.c's fenced region.

    python3 tools/gen_unicode_tables.py [--update abc.c] [UNICODE_DIR]

With --update FILE the region between FILE's "BEGIN GENERATED UNICODE TABLES" and "END GENERATED
UNICODE TABLES" lines is replaced in place (the file is written to a temporary name and renamed);
without it the tables are printed on standard output.

UNICODE_DIR (default /usr/share/unicode, Debian package `unicode-data`) must hold UnicodeData.txt,
PropList.txt and DerivedNormalizationProps.txt. Tables:
  - per code point flags (two-level lookup): general category L*, general category N*, the regex \\s
    class (Oniguruma's definition, used by Hugging Face tokenizers' Split pre-tokenizer: U+0009..U+000D,
    U+0085 and the categories Zs, Zl, Zp; checked here to equal the White_Space property), and
    "NFC_Quick_Check is not Yes";
  - canonical combining class (two-level lookup);
  - full canonical decompositions (sorted, binary-searched; Hangul syllables are algorithmic);
  - primary composites, i.e. canonical pairs minus Full_Composition_Exclusion (sorted pairs).
Only the standard library is used.
"""
import os
import re
import sys

ARGS = sys.argv[1:]
UPDATE = None
if ARGS[:1] == ["--update"]:
    if len(ARGS) < 2:
        sys.exit("usage: gen_unicode_tables.py [--update abc.c] [UNICODE_DIR]")
    UPDATE, ARGS = ARGS[1], ARGS[2:]
UNI = ARGS[0] if ARGS else "/usr/share/unicode"
BEGIN_MARK = "/* >>> BEGIN GENERATED UNICODE TABLES (tools/gen_unicode_tables.py) >>> */"
END_MARK = "/* <<< END GENERATED UNICODE TABLES <<< */"
MAX_CP = 0x110000
S_BASE, S_COUNT = 0xAC00, 11172


def data_lines(name):
    with open(os.path.join(UNI, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield [field.strip() for field in line.split(";")]


def file_version(name):
    with open(os.path.join(UNI, name), encoding="utf-8") as f:
        m = re.search(r"-(\d+\.\d+\.\d+)\.txt", f.readline())
    if not m:
        sys.exit("cannot read the Unicode version of " + name)
    return m.group(1)


def cp_range(field):
    if ".." in field:
        lo, hi = field.split("..")
        return range(int(lo, 16), int(hi, 16) + 1)
    return range(int(field, 16), int(field, 16) + 1)


def read_unicode_data():
    category = ["Cn"] * MAX_CP
    ccc = [0] * MAX_CP
    decomp = {}
    range_start = None
    for f in data_lines("UnicodeData.txt"):
        cp, name, cat = int(f[0], 16), f[1], f[2]
        if name.endswith(", First>"):
            range_start = cp
            continue
        if name.endswith(", Last>"):
            for c in range(range_start, cp + 1):
                category[c] = cat
                ccc[c] = int(f[3])
            continue
        category[cp] = cat
        ccc[cp] = int(f[3])
        if f[5] and not f[5].startswith("<"):
            decomp[cp] = [int(x, 16) for x in f[5].split()]
    return category, ccc, decomp


def read_property(name, prop, value=None):
    out = set()
    for f in data_lines(name):
        if f[1] == prop and (value is None or f[2] == value):
            out.update(cp_range(f[0]))
    return out


def full_decomposition(cp, decomp):
    if cp not in decomp:
        return [cp]
    out = []
    for c in decomp[cp]:
        out.extend(full_decomposition(c, decomp))
    return out


def two_level(values, shift, name, elem_type):
    """Splits `values` (one per code point) into blocks of 2**shift; identical blocks are stored once."""
    size = 1 << shift
    blocks, index, stage1 = [], {}, []
    for start in range(0, MAX_CP, size):
        block = tuple(values[start:start + size])
        if block not in index:
            index[block] = len(blocks)
            blocks.append(block)
        stage1.append(index[block])
    stage1_type = "uint8_t" if len(blocks) <= 256 else "uint16_t"
    lines = [f"#define {name.upper()}_SHIFT {shift}"]
    lines.append(f"static const {stage1_type} {name}_stage1[{len(stage1)}] = {{")
    lines += wrap([str(x) for x in stage1])
    lines.append("};")
    flat = [v for b in blocks for v in b]
    lines.append(f"static const {elem_type} {name}_stage2[{len(flat)}] = {{")
    lines += wrap([str(x) for x in flat])
    lines.append("};")
    nbytes = len(stage1) * (1 if stage1_type == "uint8_t" else 2) + len(flat)
    return lines, nbytes


def best_two_level(values, name):
    best = None
    for shift in range(4, 11):
        lines, nbytes = two_level(values, shift, name, "uint8_t")
        if best is None or nbytes < best[1]:
            best = (lines, nbytes)
    return best


def wrap(items, width=100):
    lines, cur = [], "   "
    for it in items:
        if len(cur) + len(it) + 2 > width:
            lines.append(cur)
            cur = "   "
        cur += " " + it + ","
    if cur.strip():
        lines.append(cur)
    return lines


def main():
    version = file_version("DerivedNormalizationProps.txt")
    if file_version("PropList.txt") != version:
        sys.exit("PropList.txt and DerivedNormalizationProps.txt have different Unicode versions")
    category, ccc, decomp = read_unicode_data()
    white_space = read_property("PropList.txt", "White_Space")
    nfc_qc_not_yes = read_property("DerivedNormalizationProps.txt", "NFC_QC")  # lists only N and M
    exclusions = read_property("DerivedNormalizationProps.txt", "Full_Composition_Exclusion")

    # Oniguruma's \s under Unicode: \t \n \v \f \r, U+0085 and General_Category Zs | Zl | Zp.
    onig_space = set(range(0x09, 0x0E)) | {0x85}
    onig_space |= {c for c in range(MAX_CP) if category[c] in ("Zs", "Zl", "Zp")}
    if onig_space != white_space:
        sys.exit("Oniguruma's \\s differs from White_Space in this Unicode version: %s" %
                 sorted(onig_space ^ white_space))

    LETTER, NUMBER, SPACE, NFC_CHECK = 1, 2, 4, 8
    flags = [0] * MAX_CP
    for c in range(MAX_CP):
        cat = category[c]
        v = 0
        if cat[0] == "L":
            v |= LETTER
        if cat[0] == "N":
            v |= NUMBER
        if c in white_space:
            v |= SPACE
        if c in nfc_qc_not_yes:
            v |= NFC_CHECK
        flags[c] = v

    # Full canonical decompositions (recursive), then the primary composites.
    full = {cp: full_decomposition(cp, decomp) for cp in sorted(decomp)}
    pairs = sorted((d[0], d[1], cp) for cp, d in decomp.items() if len(d) == 2 and cp not in exclusions)
    for a, b, cp in pairs:
        if a >= MAX_CP or b >= MAX_CP:
            sys.exit("bad composition pair")
    # Sanity: singletons and non-starter decompositions must all be excluded.
    for cp, d in decomp.items():
        if len(d) == 1 and cp not in exclusions:
            sys.exit("singleton %04X not excluded" % cp)

    out = []
    out.append("/* ================================================================================================")
    out.append(f" * 4a. Unicode {version} tables for the tokenizer.")
    out.append(" *")
    out.append(" * GENERATED REGION, do not edit by hand: `python3 tools/gen_unicode_tables.py --update abc.c`")
    out.append(f" * from the Unicode Character Database {version} (UnicodeData.txt, PropList.txt,")
    out.append(" * DerivedNormalizationProps.txt; Debian package unicode-data).")
    out.append(" * ================================================================================================ */")
    out.append("")
    out.append(f'#define UC_UNICODE_VERSION "{version}"')
    out.append("/* Per code point flags: general category L*, N*, the regex class \\s (= White_Space),")
    out.append(" * NFC_Quick_Check not Yes (the character may change under NFC). */")
    out.append("enum { UC_LETTER = 1, UC_NUMBER = 2, UC_SPACE = 4, UC_NFC_CHECK = 8 };")
    lines, nbytes = best_two_level(flags, "uc_flags")
    out += lines
    out.append(f"/* {nbytes} bytes */")
    out.append("")
    out.append("/* Canonical combining class. */")
    lines, nbytes = best_two_level(ccc, "uc_ccc")
    out += lines
    out.append(f"/* {nbytes} bytes */")
    out.append("")
    out.append("/* Full canonical decompositions: code point uc_decomp_cp[i] decomposes to")
    out.append(" * uc_decomp_seq[uc_decomp_start[i] .. uc_decomp_start[i+1]). Hangul syllables are algorithmic. */")
    cps = sorted(full)
    starts, seq = [0], []
    for cp in cps:
        seq += full[cp]
        starts.append(len(seq))
    out.append(f"#define UC_DECOMP_COUNT {len(cps)}")
    out.append(f"static const uint32_t uc_decomp_cp[{len(cps)}] = {{")
    out += wrap(["0x%X" % c for c in cps])
    out.append("};")
    out.append(f"static const uint16_t uc_decomp_start[{len(starts)}] = {{")
    out += wrap([str(s) for s in starts])
    out.append("};")
    out.append(f"static const uint32_t uc_decomp_seq[{len(seq)}] = {{")
    out += wrap(["0x%X" % c for c in seq])
    out.append("};")
    out.append("")
    out.append("/* Primary composites: the pair (first << 21 | second), sorted, composes to uc_comp_result[i].")
    out.append(" * Hangul syllables are algorithmic. */")
    out.append(f"#define UC_COMP_COUNT {len(pairs)}")
    out.append(f"static const uint64_t uc_comp_pair[{len(pairs)}] = {{")
    out += wrap(["0x%XULL" % (a << 21 | b) for a, b, _ in pairs])
    out.append("};")
    out.append(f"static const uint32_t uc_comp_result[{len(pairs)}] = {{")
    out += wrap(["0x%X" % cp for _, _, cp in pairs])
    out.append("};")
    out.append("")
    out.append("static inline unsigned uc_flags(uint32_t cp) {")
    out.append("    if (cp >= 0x110000) return 0;")
    out.append("    return uc_flags_stage2[((size_t)uc_flags_stage1[cp >> UC_FLAGS_SHIFT] << UC_FLAGS_SHIFT) |")
    out.append("                           (cp & ((1u << UC_FLAGS_SHIFT) - 1))];")
    out.append("}")
    out.append("")
    out.append("static inline unsigned uc_ccc(uint32_t cp) {")
    out.append("    if (cp >= 0x110000) return 0;")
    out.append("    return uc_ccc_stage2[((size_t)uc_ccc_stage1[cp >> UC_CCC_SHIFT] << UC_CCC_SHIFT) |")
    out.append("                         (cp & ((1u << UC_CCC_SHIFT) - 1))];")
    out.append("}")
    out.append("")
    text = "\n".join(out) + "\n"
    if UPDATE is None:
        sys.stdout.write(text)
        return
    with open(UPDATE, encoding="utf-8") as f:
        source = f.read()
    begin, end = source.find(BEGIN_MARK), source.find(END_MARK)
    if begin < 0 or end < begin:
        sys.exit(f"{UPDATE}: no generated-region markers")
    begin += len(BEGIN_MARK) + 1
    tmp = UPDATE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(source[:begin] + text + source[end:])
    os.replace(tmp, UPDATE)


if __name__ == "__main__":
    main()
