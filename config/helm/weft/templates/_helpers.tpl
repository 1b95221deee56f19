{{- /*
weft.seconds: a duration of the form the schema admits (e.g. 2160h, 1h30m, 90s) in
seconds, so that validate.yaml can compare two of them.
*/ -}}
{{- define "weft.seconds" -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | int -}}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | int -}}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | int -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- end -}}
