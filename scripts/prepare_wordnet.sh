#!/usr/bin/env bash
# Install the WordNet corpus for NLTK without network access to NLTK's downloader, from Debian packages.
#
#   scripts/prepare_wordnet.sh            # into $(python -c 'import sys; print(sys.prefix)')/nltk_data
#   NLTK_DATA=/some/dir scripts/prepare_wordnet.sh
#
# Uses the `python` on PATH (activate the venv first). NLTK searches sys.prefix/nltk_data, so a venv
# needs no environment variable afterwards. Online, `python -m nltk.downloader wordnet` does the same.
set -euo pipefail

PYTHON="${PYTHON:-python}"
NLTK_DATA="${NLTK_DATA:-$("$PYTHON" -c 'import sys; print(sys.prefix)')/nltk_data}"
SOURCE=/usr/share/wordnet
TARGET="$NLTK_DATA/corpora/wordnet"

if [ ! -f "$SOURCE/data.noun" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO apt-get install -y wordnet-base wordnet-sense-index
fi

# Copy, not symlink: NLTK refuses symlinks that lead out of its data root.
mkdir -p "$TARGET"
cp -r "$SOURCE"/. "$TARGET"/

# Debian does not ship `lexnames`, which NLTK's reader needs: the 45 lexicographer files of
# WordNet 3.0 (lexnames(5WN)), as "number<TAB>name<TAB>syntactic category".
i=0
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

NLTK_DATA="$NLTK_DATA" "$PYTHON" -c '
from nltk.corpus import wordnet
assert wordnet.synsets("market"), "WordNet loaded but found no synsets for market"
print("WordNet ready:", wordnet.get_version(), "at", wordnet.root)
'
