#!/usr/bin/env bash
# make android-check: compile the app's Java sources with javac against an Android platform jar and the
# compile-only LiteRT and ExecuTorch declarations, as far as this machine allows. No Gradle, no Maven here.
#
# The platform jar: Debian's current release ships none; its previous release has API 23's
# (android-sdk-platform-23, whose android.jar is libandroid-23-java's jar). It is fetched with a private
# apt configuration derived from this system's own sources (the codename swapped for the previous one),
# kept under build/, never touching the system's apt state. If that is impossible, one line says why and
# the check is skipped (exit 0).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ANDROID_CHECK_BUILD:-$root/../build/android-check}
jar=$build/platform/android-23.jar
gson=${GSON_JAR:-/usr/share/java/gson.jar}

skip() { echo "android-check: skipped: $*" >&2; exit 0; }

previous_codename() {
    case "$1" in
        forky) echo trixie ;; trixie) echo bookworm ;; bookworm) echo bullseye ;; bullseye) echo buster ;;
        *) return 1 ;;
    esac
}

fetch_platform_jar() {
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "no apt-get/dpkg-deb to fetch Android's platform jar"
    [ -r /etc/os-release ] || skip "no /etc/os-release: cannot tell which Debian release this is"
    current=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    previous=$(previous_codename "$current") || skip "no previous Debian release known for '$current'"
    apt_dir=$build/apt
    rm -rf "$apt_dir" && mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    : > "$apt_dir/sources.list"
    [ -f /etc/apt/sources.list ] && sed -E "s/\b$current\b/$previous/g" /etc/apt/sources.list > "$apt_dir/sources.list"
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && grep -q "\b$current\b" "$f" && sed -E "s/\b$current\b/$previous/g" "$f" > "$apt_dir/sources.list.d/$(basename "$f")"
    done
    opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "Dir::State::status=/dev/null"
          -o "Debug::NoLocking=1" -qq)
    [ "$(id -u)" = 0 ] && opts+=(-o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update >/dev/null 2>&1 || skip "cannot read Debian $previous's package lists (no network?)"
    (cd "$apt_dir" && apt-get "${opts[@]}" download libandroid-23-java >/dev/null 2>&1) \
        || skip "Debian $previous has no libandroid-23-java (android-sdk-platform-23's android.jar)"
    dpkg-deb -x "$apt_dir"/libandroid-23-java_*.deb "$apt_dir/extracted"
    mkdir -p "$(dirname "$jar")"
    cp "$apt_dir/extracted/usr/share/java/com.android.android-23.jar" "$jar.partial" && mv "$jar.partial" "$jar"
    echo "android-check: Android API 23 platform jar from Debian $previous's libandroid-23-java" >&2
}

command -v javac >/dev/null || skip "no javac (apt-get install default-jdk-headless)"
[ -f "$gson" ] || skip "no $gson (apt-get install libgoogle-gson-java)"
[ -f "$jar" ] || fetch_platform_jar

classes=$build/classes
rm -rf "$classes" && mkdir -p "$classes"
mapfile -t sources < <(find "$root/core/src/main/java" "$root/app/src/main/java" "$root/compile-only" -name '*.java' | sort)
# -bootclasspath: java.* itself comes from Android's jar, so APIs that API 23 lacks fail here too
javac -source 8 -target 8 -Xlint:-options -Xlint:deprecation -Werror -encoding UTF-8 \
    -bootclasspath "$jar" -cp "$gson" -d "$classes" "${sources[@]}"
app=$(find "$root/app/src/main/java" -name '*.java' | wc -l)
echo "android-check: compiled ${#sources[@]} Java files (app: $app) against Android API 23 and LiteRT's and ExecuTorch's declarations"
