#!/usr/bin/env bash
# Installs the system packages the test suite needs, only when missing:
# R with survival, cmprsk, MatchIt and jsonlite (live R parity suite) and
# Chromium (report test). Debian/Ubuntu only; needs root or sudo.
set -euo pipefail
need=()
command -v Rscript >/dev/null 2>&1 || need+=(r-base-core)
if command -v Rscript >/dev/null 2>&1; then
  for pair in survival:r-cran-survival cmprsk:r-cran-cmprsk MatchIt:r-cran-matchit jsonlite:r-cran-jsonlite; do
    Rscript -e "quit(status = !requireNamespace('${pair%%:*}', quietly = TRUE))" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
else
  need+=(r-cran-survival r-cran-cmprsk r-cran-matchit r-cran-jsonlite)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
