# Sourced by the bench scripts: free_port prints a TCP port no socket on this machine uses right
# now, for a process started a moment later to bind. It is taken outside the kernel's ephemeral
# range, where outgoing connections (the load's own, readiness checks) get their local ports: a
# port from inside it was once taken by one of them between the check and aloud's bind. Where
# every port is ephemeral, the caller's own retry is the only protection.
read -r EPH_LOW EPH_HIGH </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LOW=32768 EPH_HIGH=60999
if ((EPH_LOW > 21000)); then
    PORT_LO=20000 PORT_HI=$EPH_LOW
elif ((EPH_HIGH < 64000)); then
    PORT_LO=$((EPH_HIGH + 1)) PORT_HI=65536
else
    PORT_LO=20000 PORT_HI=32768
fi

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
        if [[ -z $(ss -Htan "sport = :$p" 2>/dev/null) ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
