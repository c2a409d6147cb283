# Sourced by bin/cassandra and bin/nodetool (the cassandra role's launcher/): where the release and its
# configuration are, $CASSANDRA_CONF/cassandra.env, and the functions both use. Not run on its own.

# CASSANDRA_HOME: the release's directory (its jars in lib/, or in the directory itself as Debian's package
# has them); by default the one this script is in. Resolved at start: a running node keeps the jars it
# started with when a `current` link moves to another release. CASSANDRA_CONF: its configuration (default conf/).
CASSANDRA_HOME=$(cd "${CASSANDRA_HOME:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/..}" && pwd -P)
CASSANDRA_CONF=$(cd "${CASSANDRA_CONF:-$CASSANDRA_HOME/conf}" && pwd)
export CASSANDRA_HOME CASSANDRA_CONF

# KEY=value lines of $CASSANDRA_CONF/cassandra.env, for variables the environment does not already set.
# Not sourced (no shell runs from a config file); the same file works as a systemd EnvironmentFile.
load_env_file() {
    local file=$1 line key value
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
            key=${BASH_REMATCH[1]}
            value=${BASH_REMATCH[2]}
            if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
                value=${BASH_REMATCH[1]}
            fi
            if [[ -z ${!key+set} ]]; then
                export "$key=$value"
            fi
        fi
    done < "$file"
}

find_java() {
    local java=${JAVA:-} version
    if [[ -z $java && -n ${JAVA_HOME:-} ]]; then
        java=$JAVA_HOME/bin/java
    fi
    if [[ -z $java ]]; then
        java=$(command -v java || true)
    fi
    if [[ -z $java || ! -x $java ]]; then
        echo "$(basename "$0"): no java found: install a Java 17 JRE or set JAVA or JAVA_HOME" >&2
        exit 1
    fi
    version=$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
    if [[ ${version%%.*} != 17 ]]; then
        echo "$(basename "$0"): Java 17 is required (the JVM options are proved on it); $java is ${version:-?}" >&2
        exit 1
    fi
    JAVA_BIN=$java
}

# $CASSANDRA_CONF, then every jar of the release except the JMX exporter agent (it bundles its own
# libraries): lib/*.jar (the toolkit artifact, Apache's tarball), and *.jar beside lib/ (Debian's package
# keeps apache-cassandra-<version>.jar there). JMX_EXPORTER_JAR names an agent kept outside the release.
build_classpath() {
    local jar
    CLASSPATH_VALUE=$CASSANDRA_CONF
    JAMM_JAR=
    EXPORTER_JAR=${JMX_EXPORTER_JAR:-}
    for jar in "$CASSANDRA_HOME"/*.jar "$CASSANDRA_HOME"/lib/*.jar; do
        [[ -f $jar ]] || continue
        case ${jar##*/} in
            jmx_prometheus_javaagent-*.jar) EXPORTER_JAR=${EXPORTER_JAR:-$jar}; continue ;;
            jamm-*.jar) JAMM_JAR=$jar ;;
        esac
        CLASSPATH_VALUE+=:$jar
    done
}

load_env_file "$CASSANDRA_CONF/cassandra.env"
