# Sourced by ci/test and ci/train (not run): the project's virtual environment, made once.
# `venv` is .venv (or $XBP_VENV), made with $PYTHON (default python3). `xbp_venv NAME EXTRAS`
# makes it when missing and installs xbp from this folder, editable, with EXTRAS (comma-separated,
# may be empty); it skips pip when they were installed from this folder's pyproject.toml already
# (the stamp $venv/.xbp-installed; delete it to reinstall), so a second run starts at once.

venv="${XBP_VENV:-.venv}"
python="${PYTHON:-python3}"

xbp_venv() {
  local name="$1" extras="$2"
  if [ ! -x "$venv/bin/python" ]; then
    echo "$name: making the virtual environment $venv"
    if ! "$python" -m venv "$venv"; then
      echo "$name: '$python -m venv' failed; install Python's venv module (on Debian or Ubuntu:" \
           "apt-get install python3-venv), or set PYTHON to another Python 3.10+." >&2
      exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
      || echo "$name: could not upgrade pip; going on with the venv's own" >&2
  fi
  local spec="." stamp="$venv/.xbp-installed" origin
  [ -n "$extras" ] && spec=".[$extras]"
  origin="$(pwd) $(cksum < pyproject.toml)"
  # Any earlier install from this source has xbp's own dependencies; extras must match exactly.
  if [ -n "$extras" ] && grep -qxF "$spec $origin" "$stamp" 2>/dev/null; then return; fi
  if [ -z "$extras" ] && grep -qF " $origin" "$stamp" 2>/dev/null; then return; fi
  echo "$name: installing xbp$([ -n "$extras" ] && echo "[$extras]") into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$spec $origin" >> "$stamp"
}
