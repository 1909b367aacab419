#!/usr/bin/env bash
# The --calib-dir case of issue 26: 25 photos (5 CUB species x 5), flat and in class folders; the export's chosen
# unknown policy and both rates (imprint info); then 5 classes taught from 1 other photo each and 25 further
# photos classified with the bundle's default unknown policy. With the project's environment active
# (`. .venv/bin/activate`):  bash scripts/calib_dir_case.sh ../shared/data/CUB_200_2011
set -u
CUB=$(cd "${1:?usage: bash scripts/calib_dir_case.sh CUB_ROOT [WORKDIR]}" && pwd)
W=${2:-/tmp/calib25}
rm -rf $W; mkdir -p $W/flat $W/folders $W/teach $W/query
I=$CUB/images
for c in 001.Black_footed_Albatross 067.Anna_Hummingbird 100.Brown_Pelican 106.Horned_Puffin 188.Pileated_Woodpecker; do
  mkdir -p $W/folders/$c
  ls $I/$c/*.jpg | sed -n 1,5p | while read f; do ln -s $f $W/flat/$(basename $f); ln -s $f $W/folders/$c/; done
  ls $I/$c/*.jpg | sed -n 6p | while read f; do ln -s $f $W/teach/${c}.jpg; done
  ls $I/$c/*.jpg | sed -n 7,11p | while read f; do ln -s $f $W/query/; done
done
for kind in flat folders; do
  s=$(date +%s)
  imprint export --out $W/b-$kind --formats onnx --precisions fp32 --no-latency --calib-dir $W/$kind --name calib-$kind > $W/export-$kind.log 2>&1
  echo "== $kind: export rc=$? $(( $(date +%s)-s )) s"; grep -i 'warn\|unknown' $W/export-$kind.log | head -5
  imprint info $W/b-$kind | grep -A5 'unknown policy'
  for f in $W/teach/*.jpg; do imprint learn $W/b-$kind --store $W/s-$kind.npz --label $(basename $f .jpg) $f > /dev/null; done
  imprint classify $W/b-$kind --store $W/s-$kind.npz $W/query --csv > $W/out-$kind.csv 2>/dev/null
  python3 - $W/out-$kind.csv <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))[1:]
unknown = sum(r[1] == "unknown" for r in rows)
def truth(path):
    import os
    return os.path.basename(os.path.dirname(os.path.realpath(path)))
right = sum(r[1] == truth(r[0]) for r in rows)
print(f"classified {len(rows)}: right {right}, unknown {unknown}, wrong {len(rows) - right - unknown}")
PY
done
