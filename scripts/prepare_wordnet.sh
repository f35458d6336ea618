#!/usr/bin/env bash
# Install the WordNet 3.0 corpus for NLTK (the synonym augmentation needs it), whichever way works here.
#
#   scripts/prepare_wordnet.sh            # into $(python -c 'import sys; print(sys.prefix)')/nltk_data
#   NLTK_DATA=/some/dir scripts/prepare_wordnet.sh
#
# Uses $PYTHON, else the `python` on PATH (activate the venv first). NLTK searches sys.prefix/nltk_data,
# so a venv needs no environment variable afterwards. Sources, first that works:
#   1. Debian's wordnet-base already installed (/usr/share/wordnet): copied; no network, no root. The
#      image build and CI install it first, so their WordNet never depends on GitHub being reachable.
#   2. NLTK's own downloader (GitHub), bounded by NLTK_TIMEOUT seconds (default 60): no root needed.
#   3. apt-get install wordnet-base wordnet-sense-index (root or sudo), then as 1.
set -euo pipefail

PYTHON="${PYTHON:-python}"
NLTK_DATA="${NLTK_DATA:-$("$PYTHON" -c 'import sys; print(sys.prefix)')/nltk_data}"
NLTK_TIMEOUT="${NLTK_TIMEOUT:-60}"
SOURCE="${WORDNET_DEB_DIR:-/usr/share/wordnet}"  # overridable so the fallbacks can be tested
TARGET="$NLTK_DATA/corpora/wordnet"
NLTK_FAILURE=""
APT_FAILURE=""

wordnet_ready() {  # prints "WordNet ready: ..." when NLTK finds synsets in $NLTK_DATA (not in another of its folders)
  NLTK_DATA="$NLTK_DATA" "$PYTHON" -c '
import os, sys
from nltk.corpus import wordnet
assert wordnet.synsets("market"), "WordNet loaded but found no synsets for market"
root = os.path.realpath(str(wordnet.root))
assert root.startswith(os.path.realpath(sys.argv[1]) + os.sep), f"WordNet found at {root}, not in {sys.argv[1]}"
print("WordNet ready:", wordnet.get_version(), "at", wordnet.root)
' "$NLTK_DATA"
}

from_nltk_downloader() {  # -e: stop on error instead of asking "Retry? [n/y/e]"; its exit code is 0 either way
  local log
  log=$(mktemp)
  timeout "$NLTK_TIMEOUT" "$PYTHON" -W ignore -m nltk.downloader -q -e -d "$NLTK_DATA" wordnet </dev/null >"$log" 2>&1 \
    || echo "(stopped after ${NLTK_TIMEOUT} s or failed with exit code $?)" >>"$log"
  if wordnet_ready 2>/dev/null; then
    rm -f "$log"
    return 0
  fi
  NLTK_FAILURE=$(tr -s ' \n' ' ' <"$log" | sed 's/\[nltk_data\] //g' | cut -c1-300)
  rm -f "$log"
  return 1
}

from_apt() {
  local sudo=""
  if ! command -v apt-get >/dev/null; then APT_FAILURE="no apt-get (not Debian or Ubuntu)"; return 1; fi
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then APT_FAILURE="not root and no sudo"; return 1; fi
    sudo="sudo"
  fi
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq wordnet-base wordnet-sense-index; }; then
    APT_FAILURE="apt-get install wordnet-base wordnet-sense-index failed (output above)"
    return 1
  fi
}

copy_debian_wordnet() {
  # Copy, not symlink: NLTK refuses symlinks that lead out of its data root.
  mkdir -p "$TARGET"
  cp -r "$SOURCE"/. "$TARGET"/
  # Debian does not ship `lexnames`, which NLTK's reader needs: the 45 lexicographer files of
  # WordNet 3.0 (lexnames(5WN)), as "number<TAB>name<TAB>syntactic category".
  local i=0 entry
  : > "$TARGET/lexnames"
  for entry in adj.all:3 adj.pert:3 adv.all:4 noun.Tops:1 noun.act:1 noun.animal:1 noun.artifact:1 \
    noun.attribute:1 noun.body:1 noun.cognition:1 noun.communication:1 noun.event:1 noun.feeling:1 \
    noun.food:1 noun.group:1 noun.location:1 noun.motive:1 noun.object:1 noun.person:1 \
    noun.phenomenon:1 noun.plant:1 noun.possession:1 noun.process:1 noun.quantity:1 noun.relation:1 \
    noun.shape:1 noun.state:1 noun.substance:1 noun.time:1 verb.body:2 verb.change:2 verb.cognition:2 \
    verb.communication:2 verb.competition:2 verb.consumption:2 verb.contact:2 verb.creation:2 \
    verb.emotion:2 verb.motion:2 verb.perception:2 verb.possession:2 verb.social:2 verb.stative:2 \
    verb.weather:2 adj.ppl:3; do
    printf '%02d\t%s\t%s\n' "$i" "${entry%%:*}" "${entry##*:}" >> "$TARGET/lexnames"
    i=$((i + 1))
  done
  wordnet_ready
}

if [ -f "$SOURCE/data.noun" ]; then
  copy_debian_wordnet
  exit 0
fi

echo "WordNet: trying NLTK's downloader (at most ${NLTK_TIMEOUT} s) into $NLTK_DATA"
if from_nltk_downloader; then
  exit 0
fi
echo "WordNet: NLTK's downloader failed: $NLTK_FAILURE" >&2
echo "WordNet: trying Debian's wordnet-base and wordnet-sense-index (apt-get, root or sudo)" >&2
if from_apt && [ -f "$SOURCE/data.noun" ]; then
  copy_debian_wordnet
  exit 0
fi

cat >&2 <<EOF
WordNet could not be installed into $NLTK_DATA:
  - NLTK's downloader: ${NLTK_FAILURE:-failed}
  - Debian's packages: ${APT_FAILURE:-installed, but $SOURCE/data.noun is missing}
Fix one and rerun this script: give this machine access to raw.githubusercontent.com (NLTK's downloader),
or run 'sudo apt-get install wordnet-base wordnet-sense-index', or copy a WordNet folder from a machine
that has one ('python -m nltk.downloader -d DIR wordnet' there) to $TARGET.
EOF
exit 1
