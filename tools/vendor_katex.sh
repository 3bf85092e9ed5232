#!/usr/bin/env bash
# Refreshes the KaTeX shipped with the docs (docs/assets/katex) from the npm registry.
# The site loads only these files, so the theory page typesets offline. KaTeX is MIT
# licensed (its LICENSE is copied beside it). Only the woff2 fonts are kept: every
# browser the site supports takes woff2 first, so the woff/ttf fallbacks are never read.
set -euo pipefail
version="${1:-0.16.47}"
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "katex@$version" >/dev/null && tar xzf katex-*.tgz)
dest="$here/docs/assets/katex"
rm -rf "$dest"; mkdir -p "$dest/fonts"
cp "$tmp/package/dist/katex.min.js" "$tmp/package/dist/katex.min.css" "$tmp/package/LICENSE" "$dest/"
cp "$tmp/package/dist/fonts/"*.woff2 "$dest/fonts/"
echo "$version" > "$dest/VERSION"
echo "KaTeX $version -> $dest"
