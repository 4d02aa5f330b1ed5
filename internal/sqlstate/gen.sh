#!/bin/sh
# Regenerates names.go from PostgreSQL's errcodes.txt: the first condition
# name given for each SQLSTATE. Usage: ./gen.sh [path/to/errcodes.txt]
set -eu
src=${1:-$(pg_config --sharedir)/errcodes.txt}
{
	cat <<'HEAD'
// Code generated from PostgreSQL 15's src/backend/utils/errcodes.txt
// (installed as $(pg_config --sharedir)/errcodes.txt) by gen.sh; DO NOT EDIT.

package sqlstate

// names maps each SQLSTATE PostgreSQL defines to its condition name, as
// PL/pgSQL spells it. Codes listed without a condition name are left out.
var names = map[string]string{
HEAD
	awk '/^[0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][ \t]/ && NF >= 4 && !seen[$1]++ { printf "\t\"%s\": \"%s\",\n", $1, $4 }' "$src"
	echo "}"
} >names.go
gofmt -w names.go
