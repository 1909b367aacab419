"""The installable demo APK (`make apk`, android_demo/tools/build_apk.sh), opened and checked as a phone would.

Builds the APK into a temporary directory from the default bundle (bundles/lite0-imagenet, which `make apk`
exports; without it, the tiny test bundle of tests/tiny.py) and ONNX Runtime's AAR (fetched once from the npm
registry into cache/android/ by scripts/fetch_onnxruntime_aar.sh, sha256-pinned), then checks what the package
manager and the app need: the signature and alignment, the manifest (package, SDK levels, camera permission,
launcher, native libraries mapped from the APK), a dex that the ART dexdump reads and whose every type
reference resolves (to its own classes, API 23's or a short list of later ones ONNX Runtime uses), both ONNX
Runtime libraries for each ABI, the bundle in assets/bundle/ byte-equal and stored uncompressed, and imprint-core
(what the app runs on the phone to open its bundle) picking the shipped ONNX file from the shipped manifest.

Also checks android_demo/tools/Desugar.java, which turns ONNX Runtime's Java 17 classes into Java 8 ones for dx,
on a Java 17 program (lambdas, method and constructor references, nestmates) run by the JVM's verifier.

Skips with the reason when a tool (scripts/install_android_check_deps.sh), a vendored file (../shared/vendor)
or the npm registry is missing, as the other Android checks do.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "android_demo" / "tools"
VENDOR = ROOT.parent / "shared" / "vendor"
ANDROID_JAR = VENDOR / "android" / "android-23.jar"
DX_JAR = VENDOR / "android" / "dx.jar"
ASM = ("/usr/share/java/asm.jar", "/usr/share/java/asm-tree.jar")
DEFAULT_BUNDLE = ROOT / "bundles" / "lite0-imagenet"
ABIS = {"arm64-v8a": 183, "armeabi-v7a": 40, "x86_64": 62}  # ELF e_machine: AArch64, ARM, x86-64
PACKAGE = "org.imprinting.demo"
MIN_SDK = 24  # ONNX Runtime 1.29's AAR declares 24 (native libraries built for API 24); app/build.gradle says so

# Types the dex references that are neither its own classes nor in android-23.jar, each with why that is fine.
LATER_THAN_23 = {
    "Ljava/util/Optional;": "API 24",
    "Ljava/util/function/Function;": "API 24",
    "Ljava/util/stream/Collector;": "API 24",
    "Ljava/util/stream/Collectors;": "API 24",
    "Ljava/util/stream/DoubleStream;": "API 24",
    "Ljava/util/stream/LongStream;": "API 24",
    "Ljava/util/stream/Stream;": "API 24",
    "Ljava/lang/FunctionalInterface;": "API 24 (an annotation)",
    # API 26, only on ONNX Runtime's desktop path (extracting libraries to a temp dir), which
    # OnnxRuntime.isAndroid() skips; ART verifies such methods lazily.
    "Ljava/nio/file/Files;": "API 26, desktop path",
    "Ljava/nio/file/Path;": "API 26, desktop path",
    "Ljava/nio/file/Paths;": "API 26, desktop path",
    "Ljava/nio/file/attribute/FileAttribute;": "API 26, desktop path",
}
ANNOTATION_PREFIXES = ("Ldalvik/annotation/", "Landroidx/annotation/")  # system annotations; build-time ones


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not found (run scripts/install_android_check_deps.sh)")
    return path


def _run(*cmd: str, timeout: int = 120) -> str:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stdout}{p.stderr}"
    return p.stdout + p.stderr


def _copy_bundle(out: Path) -> bool:
    """Puts the bundle the APK is built from into `out`: a copy of the default one (so that a concurrent export
    cannot change it mid-test; True), or the tiny test bundle where there is none (False)."""
    out.mkdir(parents=True)
    if (DEFAULT_BUNDLE / "manifest.json").is_file():
        for f in DEFAULT_BUNDLE.iterdir():
            if f.name == "manifest.json" or f.suffix == ".onnx":
                shutil.copy2(f, out / f.name)
        return True
    pytest.importorskip("onnx")
    from tiny import write_tiny_bundle

    write_tiny_bundle(out)
    return False


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bool]:
    """(the signed APK, the bundle it carries, whether that is the default bundle)."""
    tmp = tmp_path_factory.mktemp("apk")
    bundle = tmp / "bundle"
    default = _copy_bundle(bundle)
    apk = tmp / "imprinting-demo.apk"
    p = subprocess.run(["bash", str(TOOLS / "build_apk.sh"), "--bundle", str(bundle), "--out", str(apk)],
                       capture_output=True, text=True, timeout=900)
    text = p.stdout + p.stderr
    if p.returncode == 77:
        pytest.skip([line for line in text.splitlines() if line.startswith("SKIP:")][-1])
    print(text)
    assert p.returncode == 0, text
    return apk, bundle, default


def _selected_model(manifest: dict) -> str:
    """The ONNX file the app opens (Manifest.selectOnnx in imprint-core: int8, then fp32)."""
    for precision in ("int8", "fp32"):
        for e in manifest["extractors"]:
            if e["format"] == "onnx" and e["precision"] == precision:
                return e["file"]
    raise AssertionError("the bundle has no ONNX extractor")


def _data_offset(apk: Path, info: zipfile.ZipInfo) -> int:
    with apk.open("rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    assert head[:4] == b"PK\x03\x04"
    n, m = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + n + m


def test_signed_and_aligned(built: tuple[Path, Path, bool]) -> None:
    apk = built[0]
    out = _run(_tool("apksigner"), "verify", "-v", "--min-sdk-version", str(MIN_SDK), str(apk))
    assert "Verifies" in out and "Verified using v2 scheme (APK Signature Scheme v2): true" in out, out
    _run(_tool("zipalign"), "-c", "-p", "4", str(apk))
    unsigned = apk.with_name(apk.stem + "-unsigned.apk")
    assert unsigned.is_file()  # what a release is signed from (android_demo/README.md)
    p = subprocess.run([_tool("apksigner"), "verify", str(unsigned)], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0


def test_manifest_as_the_package_manager_reads_it(built: tuple[Path, Path, bool]) -> None:
    apk = built[0]
    badging = _run(_tool("aapt"), "dump", "badging", str(apk))
    assert re.search(rf"^package: name='{PACKAGE}' versionCode='1' versionName='0\.1'", badging, re.M), badging
    assert f"sdkVersion:'{MIN_SDK}'" in badging, badging
    target = int(re.search(r"targetSdkVersion:'(\d+)'", badging).group(1))
    assert target >= 24, "Android 15 and newer refuse to install apps that target API 23 or lower"
    assert "uses-permission: name='android.permission.CAMERA'" in badging
    assert f"launchable-activity: name='{PACKAGE}.MainActivity'" in badging
    assert "native-code: 'arm64-v8a' 'armeabi-v7a' 'x86_64'" in badging, badging
    tree = _run("aapt", "dump", "xmltree", str(apk), "AndroidManifest.xml")
    # Libraries are mapped from the APK (stored and aligned below), as Gradle packages them for minSdk >= 23.
    assert re.search(r"android:extractNativeLibs\(0x[0-9a-f]+\)=\(type 0x12\)0x0\b", tree), tree


def _dex_types(dex: bytes) -> tuple[set[str], set[str]]:
    """(every type descriptor the dex references, the classes it defines), from its type_ids and class_defs."""
    assert dex[:4] == b"dex\n"
    u32 = lambda o: struct.unpack_from("<I", dex, o)[0]  # noqa: E731

    def string(i: int) -> str:
        o = u32(u32(0x3C) + 4 * i)
        while dex[o] & 0x80:  # skip the ULEB128 length
            o += 1
        o += 1
        return dex[o:dex.index(b"\0", o)].decode("utf-8")

    types = [string(u32(u32(0x44) + 4 * i)) for i in range(u32(0x40))]
    defined = {types[u32(u32(0x64) + 32 * i)] for i in range(u32(0x60))}
    return set(types), defined


def test_every_referenced_class_is_there(built: tuple[Path, Path, bool], tmp_path: Path) -> None:
    apk = built[0]
    if not ANDROID_JAR.is_file():
        pytest.skip(f"vendored file {ANDROID_JAR} is absent (see shared/vendor/README.md)")
    with zipfile.ZipFile(apk) as z:
        dexes = [n for n in z.namelist() if re.fullmatch(r"classes\d*\.dex", n)]
        assert dexes == ["classes.dex"]
        (tmp_path / "classes.dex").write_bytes(z.read("classes.dex"))
    # ART's dexdump checks the checksum and verifies the file's structure before dumping it.
    out = _run(_tool("dexdump"), "-f", str(tmp_path / "classes.dex"))
    assert "DEX version '03" in out, out[:500]

    refs, defined = _dex_types((tmp_path / "classes.dex").read_bytes())
    classes = {t.lstrip("[") for t in refs}
    classes = {t for t in classes if t.startswith("L")}
    with zipfile.ZipFile(ANDROID_JAR) as z:
        framework = {"L" + n[: -len(".class")] + ";" for n in z.namelist() if n.endswith(".class")}
    missing = sorted(t for t in classes - defined - framework
                     if t not in LATER_THAN_23 and not t.startswith(ANNOTATION_PREFIXES))
    assert not missing, f"types the dex references but neither defines nor finds in API 23: {missing}"
    ours = {t for t in classes if t.startswith(("Lorg/imprinting/", "Lai/onnxruntime/"))}
    assert ours <= defined, sorted(ours - defined)
    # What the manifest and the app's code name: the activities, imprint-core, ONNX Runtime's API.
    for name in ("org/imprinting/demo/MainActivity", "org/imprinting/demo/ClassesActivity",
                 "org/imprinting/demo/Extractor", "org/imprinting/core/Manifest", "org/imprinting/core/ClassStore",
                 "ai/onnxruntime/OrtEnvironment", "ai/onnxruntime/OrtSession", "ai/onnxruntime/OnnxTensor",
                 "ai/onnxruntime/OnnxRuntime"):
        assert f"L{name};" in defined, name


def test_native_libraries_for_each_abi(built: tuple[Path, Path, bool]) -> None:
    apk = built[0]
    with zipfile.ZipFile(apk) as z:
        libs = {n for n in z.namelist() if n.startswith("lib/")}
        assert libs == {f"lib/{abi}/{so}" for abi in ABIS for so in ("libonnxruntime.so", "libonnxruntime4j_jni.so")}
        for name in sorted(libs):
            info = z.getinfo(name)
            assert info.compress_type == zipfile.ZIP_STORED, name
            # Mapped straight from the APK: page-aligned, for 4 KiB and 16 KiB pages.
            assert _data_offset(apk, info) % 16384 == 0, name
            head = z.open(name).read(20)
            assert head[:4] == b"\x7fELF", name
            assert struct.unpack_from("<H", head, 18)[0] == ABIS[name.split("/")[1]], name


def test_bundle_in_assets(built: tuple[Path, Path, bool]) -> None:
    apk, bundle, default = built
    manifest_bytes = (bundle / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    model = _selected_model(manifest)
    with zipfile.ZipFile(apk) as z:
        assets = sorted(n for n in z.namelist() if n.startswith("assets/"))
        assert assets == sorted(["assets/bundle/manifest.json", f"assets/bundle/{model}"])
        assert z.read("assets/bundle/manifest.json") == manifest_bytes
        data = z.read(f"assets/bundle/{model}")
        assert data == (bundle / model).read_bytes()
        entry = next(e for e in manifest["extractors"] if e["file"] == model)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        info = z.getinfo(f"assets/bundle/{model}")
        assert info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size
        assert _data_offset(apk, info) % 4 == 0
    if default:
        assert any(e["precision"] == "int8" and e["file"] == model for e in manifest["extractors"]), \
            "the default bundle's int8 ONNX file is the one shipped"


READ_BUNDLE = """
import org.imprinting.core.Manifest;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
public class ReadBundle {
    public static void main(String[] args) throws Exception {
        Manifest m = Manifest.parse(new String(Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8));
        Manifest.Extractor e = m.selectOnnx();
        System.out.println(e.file + " " + e.layout + " " + m.preprocess.inputSize + " " + m.embeddingDim);
    }
}
"""


def test_the_app_core_opens_the_shipped_bundle(built: tuple[Path, Path, bool], tmp_path: Path) -> None:
    """imprint-core (what ModelBundle.load runs on the phone) parses the APK's manifest.json and picks the
    ONNX file that the APK carries."""
    apk, bundle, _ = built
    javac, java = _tool("javac"), _tool("java")
    with zipfile.ZipFile(apk) as z:
        (tmp_path / "manifest.json").write_bytes(z.read("assets/bundle/manifest.json"))
        shipped = {n.rsplit("/", 1)[1] for n in z.namelist() if n.startswith("assets/bundle/")}
    (tmp_path / "ReadBundle.java").write_text(READ_BUNDLE)
    core = sorted(str(p) for p in (ROOT / "android_demo" / "imprint-core" / "src" / "main" / "java").rglob("*.java"))
    _run(javac, "-Xlint:-options", "-encoding", "UTF-8", "--release", "8", "-d", str(tmp_path / "classes"),
         *core, str(tmp_path / "ReadBundle.java"))
    file, layout, size, dim = _run(java, "-cp", str(tmp_path / "classes"), "ReadBundle",
                                   str(tmp_path / "manifest.json")).split()
    assert file in shipped and file.endswith(".onnx")
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    assert file == _selected_model(manifest)
    assert (int(size), int(dim)) == (manifest["preprocess"]["input_size"], manifest["embedding_dim"])
    assert layout in ("NCHW", "NHWC")


SAMPLE = """
import java.util.function.*;
public class Sample {
    private int secret = 40;
    private static String hidden(String s) { return "<" + s + ">"; }
    private int bump(int by) { return secret += by; }
    private static final class Inner {
        private final int value;
        private Inner(int value) { this.value = value; }
        private int twice(Sample s) { return s.bump(value) + s.secret; }  // nestmate access both ways
    }
    interface Maker { Inner make(int v); }
    public static void main(String[] args) {
        Sample s = new Sample();
        Inner in = new Inner(1);
        int base = 2;
        IntUnaryOperator plus = x -> x + base + s.secret;         // capturing lambda, primitive SAM
        Function<String, String> h = Sample::hidden;             // static method reference
        Supplier<Integer> boxed = () -> s.bump(0);                // boxing of the result
        Maker maker = Inner::new;                                // constructor reference (private, nestmate)
        BiFunction<Sample, Integer, Integer> bump = Sample::bump; // unbound receiver, unboxing
        System.out.println(in.twice(s) + " " + plus.applyAsInt(1) + " " + h.apply("x") + " "
                + boxed.get() + " " + maker.make(3).value + " " + bump.apply(s, 5));
    }
}
"""


def test_desugar_runs_java17_code_as_java8(tmp_path: Path) -> None:
    javac, java = _tool("javac"), _tool("java")
    for f in (*ASM, DX_JAR):
        if not Path(f).is_file():
            pytest.skip(f"{f} is absent (libasm-java: scripts/install_android_check_deps.sh; dx: shared/vendor)")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Sample.java").write_text(SAMPLE)
    # String concatenation through invokedynamic (javac 9+'s default) is refused by name, not miscompiled;
    # ONNX Runtime's classes have none. The sample is compiled without it to check the rest.
    _run(javac, "--release", "17", "-d", str(tmp_path / "j17"), str(tmp_path / "src" / "Sample.java"))
    with zipfile.ZipFile(tmp_path / "concat.jar", "w") as z:
        for f in sorted((tmp_path / "j17").glob("*.class")):
            z.write(f, f.name)
    shutil.rmtree(tmp_path / "j17")
    _run(javac, "--release", "17", "-XDstringConcat=inline", "-d", str(tmp_path / "j17"),
         str(tmp_path / "src" / "Sample.java"))
    expected = _run(java, "-cp", str(tmp_path / "j17"), "Sample").strip()
    assert expected == "82 44 <x> 41 3 46"
    with zipfile.ZipFile(tmp_path / "in.jar", "w") as z:
        for f in sorted((tmp_path / "j17").glob("*.class")):
            z.write(f, f.name)
    cp = ":".join(ASM)
    _run(javac, "-Xlint:-options", "-cp", cp, "-d", str(tmp_path / "tool"), str(TOOLS / "Desugar.java"))
    p = subprocess.run([java, "-cp", f"{cp}:{tmp_path / 'tool'}", "Desugar", str(tmp_path / "concat.jar"),
                        str(tmp_path / "refused")], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "StringConcatFactory" in p.stderr, p.stdout + p.stderr
    _run(java, "-cp", f"{cp}:{tmp_path / 'tool'}", "Desugar", str(tmp_path / "in.jar"), str(tmp_path / "j8"))
    out = sorted((tmp_path / "j8").glob("*.class"))
    assert len(out) == 3 + 5  # Sample, Inner, Maker and a class per lambda or reference
    for f in out:
        assert struct.unpack(">H", f.read_bytes()[6:8])[0] == 52, f.name  # Java 8
    # The JVM verifies every class (version 52: the type-checking verifier) and the program gives the same answer.
    assert _run(java, "-Xverify:all", "-cp", str(tmp_path / "j8"), "Sample").strip() == expected
    _run(java, "-jar", str(DX_JAR), "--dex", "--min-sdk-version=24", f"--output={tmp_path / 'sample.dex'}",
         str(tmp_path / "j8"))
    assert (tmp_path / "sample.dex").stat().st_size > 0
