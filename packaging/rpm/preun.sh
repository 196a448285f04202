# cutover %preun ($1: 0 erase, 1 upgrade): stop and disable the unit on erase.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now cutover.service >/dev/null 2>&1 || :
fi
exit 0
