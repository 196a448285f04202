# cutover %postun ($1: 0 erase, 1 upgrade): restart a running agent after an upgrade. An
# erase keeps /var/lib/cutover (RPM has no purge: remove it by hand) and the user.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart cutover.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rm -rf /run/cutover
fi
exit 0
