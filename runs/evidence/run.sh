#!/bin/sh
# The held-out table: `symprune baselines` on brown:test for one model at each setting, one JSON per
# setting in runs/evidence/MODEL/. Usage: sh runs/evidence/run.sh MODEL_DIR NAME [SETTING...]
# (settings: 50 60 70 2:4 4:8; default all). Then: node --import tsx runs/evidence/table.ts
# ROBUST=1: instead, the rows of the robust reference run's metric (runs/reference-robust/best.json)
# and, unstructured, its searched allocation (alloc.json), into SETTING-robust.json.
set -e
model=$1; name=$2; shift 2
settings=${*:-"70 50 2:4 60 4:8"}
metric=runs/reference/best.json
mkdir -p runs/evidence/$name
for s in $settings; do
  if [ -n "$ROBUST" ]; then
    case $s in
      *:*) args="--pattern $s --sparsity 0.5 --methods metric"; file=$(echo $s | tr : -)-robust ;;
      *) args="--sparsity 0.$s --allocation runs/reference-robust/alloc.json --methods metric,metric+alloc"; file=u$s-robust ;;
    esac
    metric=runs/reference-robust/best.json
  else case $s in
    *:*) args="--pattern $s --sparsity 0.5 --methods magnitude,wanda,gblm,ria,pruner-zero,sparsegpt,metric"; file=$(echo $s | tr : -) ;;
    *) args="--sparsity 0.$s --methods magnitude,wanda,gblm,ria,pruner-zero,sparsegpt,magnitude+owl,wanda+owl,gblm+owl,ria+owl,pruner-zero+owl,sparsegpt+owl,metric,metric+owl"; file=u$s ;;
  esac; fi
  out=runs/evidence/$name/$file.json
  [ -s $out ] && continue
  echo "$(date -u +%T) $name $s: node bin/symprune.mjs baselines --model $model --metric $metric $args --json"
  node bin/symprune.mjs baselines --model $model --metric $metric $args --json > $out.part
  mv $out.part $out
done
