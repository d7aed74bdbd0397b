#!/bin/bash
# tools/gen-man.sh AGENT TEMPLATE -- the man page, its OPTIONS section made
# from the agent's own --help so the two cannot drift apart.
set -euo pipefail
agent=$1 template=$2
version=$("$agent" --version | awk '{print $2}')
options=$("$agent" --help | awk '
	function flush() { if (text != "") print text; text = "" }
	/^[A-Z][A-Za-z ]*:$/ { flush(); sub(":$", ""); print ".SS " $0; next }
	/^  --/ {
		flush()
		flag = $1; $1 = ""; sub(/^ +/, "");
		gsub(/-/, "\\-", flag);
		print ".TP"; print ".B " flag; text = $0; next
	}
	/^      +[^ ]/ { sub(/^ +/, ""); text = text " " $0; next }  # a wrapped line
	/^Memory:|^Passwords:|^Signals:|^Exit status:/ { flush(); exit }
	{ flush() }
	END { flush() }
')
# Escape for the replacement below: backslashes and ampersands.
options=${options//\\/\\\\}
options=${options//&/\\&}
sed -e "s/@VERSION@/$version/" "$template" | awk -v opts="$options" '
	$0 == "@OPTIONS@" { print opts; next } { print }'
