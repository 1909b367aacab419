import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.Handle;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.Type;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.ClassNode;
import org.objectweb.asm.tree.FieldInsnNode;
import org.objectweb.asm.tree.FieldNode;
import org.objectweb.asm.tree.InvokeDynamicInsnNode;
import org.objectweb.asm.tree.MethodInsnNode;
import org.objectweb.asm.tree.MethodNode;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Rewrites a jar of Java 9-17 class files into Java 8 class files that dx accepts, doing the part of d8's
 * desugaring that ONNX Runtime's Android classes.jar needs (the AAR ships javac output for Java 17; Gradle's
 * d8 desugars it, and dx, the only dexer available offline, reads class files up to Java 8 only):
 * <ul>
 *   <li>class file version 52 (Java 8);</li>
 *   <li>nestmates (Java 11): NestHost/NestMembers are dropped, and every private member that another class of
 *       the jar uses (javac 11+ reaches them directly instead of through synthetic accessors) becomes
 *       package-private (all nest members share a package); calls to a widened method from its own class
 *       change from invokespecial to invokevirtual, since dx turns invokespecial into invoke-direct;</li>
 *   <li>lambdas and method references (LambdaMetafactory.metafactory): each becomes a class of its own with
 *       a static factory, as d8 and retrolambda do; the lambda body it calls becomes package-private.</li>
 * </ul>
 * Anything else that Java 8 lacks (string concatenation through invokedynamic, altMetafactory, records,
 * sealed classes, constant dynamic) stops the tool with an error naming the class, rather than producing a
 * dex that would fail on a phone. Library APIs are not touched: a class that calls a method Android lacks
 * still does, exactly as after Gradle's d8.
 *
 * Usage: java -cp asm.jar:asm-tree.jar:. Desugar IN.jar OUT_DIR
 */
public final class Desugar {
    private final Map<String, ClassNode> classes = new LinkedHashMap<>();
    private final List<ClassNode> generated = new ArrayList<>();
    /** owner.name+desc of private members to widen to package-private. */
    private final Set<String> widen = new HashSet<>();

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: Desugar IN.jar OUT_DIR");
            System.exit(2);
        }
        Desugar d = new Desugar();
        d.read(new File(args[0]));
        d.run();
        int n = d.write(new File(args[1]));
        System.out.println("desugared " + n + " classes (" + d.generated.size() + " lambda classes) to Java 8");
    }

    private static String key(String owner, String name, String desc) {
        return owner + "." + name + desc;
    }

    private void read(File jar) throws IOException {
        try (ZipFile zip = new ZipFile(jar)) {
            Enumeration<? extends ZipEntry> entries = zip.entries();
            while (entries.hasMoreElements()) {
                ZipEntry e = entries.nextElement();
                if (!e.getName().endsWith(".class") || e.getName().endsWith("module-info.class")
                        || e.getName().startsWith("META-INF/")) {
                    continue;
                }
                try (InputStream in = zip.getInputStream(e)) {
                    ClassNode c = new ClassNode();
                    new ClassReader(readAll(in)).accept(c, 0);
                    classes.put(c.name, c);
                }
            }
        }
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        for (int n; (n = in.read(buf)) > 0; ) {
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }

    private static void fail(ClassNode c, String why) {
        throw new IllegalStateException(c.name + ": " + why + " (not supported by android_demo/tools/Desugar.java)");
    }

    private void run() {
        for (ClassNode c : classes.values()) {
            if (c.recordComponents != null || c.permittedSubclasses != null) {
                fail(c, "record or sealed class");
            }
            for (MethodNode m : c.methods) {
                for (AbstractInsnNode insn : m.instructions) {
                    if (insn instanceof FieldInsnNode) {
                        FieldInsnNode f = (FieldInsnNode) insn;
                        markIfPrivate(c, f.owner, f.name, f.desc, false);
                    } else if (insn instanceof MethodInsnNode) {
                        MethodInsnNode mi = (MethodInsnNode) insn;
                        markIfPrivate(c, mi.owner, mi.name, mi.desc, true);
                    }
                }
            }
        }
        for (ClassNode c : new ArrayList<>(classes.values())) {
            int n = 0;
            for (MethodNode m : c.methods) {
                for (AbstractInsnNode insn : m.instructions.toArray()) {
                    if (insn instanceof InvokeDynamicInsnNode) {
                        InvokeDynamicInsnNode indy = (InvokeDynamicInsnNode) insn;
                        String lambda = lambdaClass(c, indy, n++);
                        m.instructions.set(insn, new MethodInsnNode(Opcodes.INVOKESTATIC, lambda, "create", indy.desc, false));
                    }
                }
            }
        }
        for (ClassNode c : classes.values()) {
            c.version = Opcodes.V1_8;
            c.nestHostClass = null;
            c.nestMembers = null;
            boolean itf = (c.access & Opcodes.ACC_INTERFACE) != 0;
            Set<String> widenedMethods = new HashSet<>();
            for (FieldNode f : c.fields) {
                if (widen.contains(key(c.name, f.name, f.desc))) {
                    f.access &= ~Opcodes.ACC_PRIVATE;
                }
            }
            for (MethodNode m : c.methods) {
                if (widen.contains(key(c.name, m.name, m.desc))) {
                    if (itf) {
                        fail(c, "a private interface method used from another class: " + m.name);
                    }
                    m.access &= ~Opcodes.ACC_PRIVATE;
                    if (!m.name.equals("<init>") && (m.access & Opcodes.ACC_STATIC) == 0) {
                        widenedMethods.add(m.name + m.desc);
                        checkNotOverridden(c, m);
                    }
                }
            }
            for (MethodNode m : c.methods) {
                for (AbstractInsnNode insn : m.instructions) {
                    if (insn.getOpcode() == Opcodes.INVOKESPECIAL) {
                        MethodInsnNode mi = (MethodInsnNode) insn;
                        if (mi.owner.equals(c.name) && widenedMethods.contains(mi.name + mi.desc)) {
                            mi.setOpcode(Opcodes.INVOKEVIRTUAL);
                        }
                    }
                }
            }
        }
    }

    /** A widened instance method must not become overridden by a subclass's method of the same signature. */
    private void checkNotOverridden(ClassNode c, MethodNode widened) {
        for (ClassNode sub : classes.values()) {
            for (ClassNode k = classes.get(sub.superName); k != null; k = classes.get(k.superName)) {
                if (k == c) {
                    for (MethodNode m : sub.methods) {
                        if (m.name.equals(widened.name) && m.desc.equals(widened.desc)) {
                            fail(c, "widening " + widened.name + " would let " + sub.name + " override it");
                        }
                    }
                }
            }
        }
    }

    /** Marks owner's member for widening when it is private and used from another class of the jar. */
    private void markIfPrivate(ClassNode from, String owner, String name, String desc, boolean method) {
        ClassNode o = classes.get(owner);
        if (o == null || owner.equals(from.name)) {
            return;
        }
        if (method) {
            for (MethodNode m : o.methods) {
                if (m.name.equals(name) && m.desc.equals(desc) && (m.access & Opcodes.ACC_PRIVATE) != 0) {
                    widen.add(key(owner, name, desc));
                }
            }
        } else {
            for (FieldNode f : o.fields) {
                if (f.name.equals(name) && f.desc.equals(desc) && (f.access & Opcodes.ACC_PRIVATE) != 0) {
                    widen.add(key(owner, name, desc));
                }
            }
        }
    }

    /** Generates HOST$$Lambda$N for one LambdaMetafactory.metafactory call site; returns its name. */
    private String lambdaClass(ClassNode host, InvokeDynamicInsnNode indy, int index) {
        Handle bsm = indy.bsm;
        if (!bsm.getOwner().equals("java/lang/invoke/LambdaMetafactory") || !bsm.getName().equals("metafactory")) {
            fail(host, "invokedynamic with bootstrap " + bsm.getOwner() + "." + bsm.getName());
        }
        Type samType = (Type) indy.bsmArgs[0];
        Handle impl = (Handle) indy.bsmArgs[1];
        Type instantiated = (Type) indy.bsmArgs[2];
        Type factory = Type.getMethodType(indy.desc);
        String itf = factory.getReturnType().getInternalName();
        Type[] captured = factory.getArgumentTypes();
        String name = host.name + "$$Lambda$" + index;

        ClassNode impOwner = classes.get(impl.getOwner());
        if (impOwner != null) {
            for (MethodNode m : impOwner.methods) {
                if (m.name.equals(impl.getName()) && m.desc.equals(impl.getDesc()) && (m.access & Opcodes.ACC_PRIVATE) != 0) {
                    widen.add(key(impl.getOwner(), impl.getName(), impl.getDesc()));
                }
            }
        }

        ClassWriter cw = new ClassWriter(ClassWriter.COMPUTE_MAXS);
        cw.visit(Opcodes.V1_8, Opcodes.ACC_FINAL | Opcodes.ACC_SYNTHETIC | Opcodes.ACC_SUPER, name, null,
                "java/lang/Object", new String[] {itf});
        StringBuilder ctorDesc = new StringBuilder("(");
        for (int i = 0; i < captured.length; i++) {
            cw.visitField(Opcodes.ACC_FINAL, "f" + i, captured[i].getDescriptor(), null, null).visitEnd();
            ctorDesc.append(captured[i].getDescriptor());
        }
        ctorDesc.append(")V");

        MethodVisitor mv = cw.visitMethod(0, "<init>", ctorDesc.toString(), null, null);
        mv.visitCode();
        mv.visitVarInsn(Opcodes.ALOAD, 0);
        mv.visitMethodInsn(Opcodes.INVOKESPECIAL, "java/lang/Object", "<init>", "()V", false);
        int slot = 1;
        for (int i = 0; i < captured.length; i++) {
            mv.visitVarInsn(Opcodes.ALOAD, 0);
            mv.visitVarInsn(captured[i].getOpcode(Opcodes.ILOAD), slot);
            mv.visitFieldInsn(Opcodes.PUTFIELD, name, "f" + i, captured[i].getDescriptor());
            slot += captured[i].getSize();
        }
        mv.visitInsn(Opcodes.RETURN);
        mv.visitMaxs(0, 0);
        mv.visitEnd();

        mv = cw.visitMethod(Opcodes.ACC_STATIC, "create", indy.desc, null, null);
        mv.visitCode();
        mv.visitTypeInsn(Opcodes.NEW, name);
        mv.visitInsn(Opcodes.DUP);
        slot = 0;
        for (Type t : captured) {
            mv.visitVarInsn(t.getOpcode(Opcodes.ILOAD), slot);
            slot += t.getSize();
        }
        mv.visitMethodInsn(Opcodes.INVOKESPECIAL, name, "<init>", ctorDesc.toString(), false);
        mv.visitInsn(Opcodes.ARETURN);
        mv.visitMaxs(0, 0);
        mv.visitEnd();

        // The interface method: captured values, then the call's arguments, adapted to the target's types.
        mv = cw.visitMethod(Opcodes.ACC_PUBLIC, indy.name, samType.getDescriptor(), null, null);
        mv.visitCode();
        int tag = impl.getTag();
        Type implType = Type.getMethodType(impl.getDesc());
        List<Type> targetParams = new ArrayList<>();
        if (tag == Opcodes.H_NEWINVOKESPECIAL) {
            mv.visitTypeInsn(Opcodes.NEW, impl.getOwner());
            mv.visitInsn(Opcodes.DUP);
        } else if (tag != Opcodes.H_INVOKESTATIC) {
            targetParams.add(Type.getObjectType(impl.getOwner()));  // the receiver
        }
        for (Type t : implType.getArgumentTypes()) {
            targetParams.add(t);
        }
        if (targetParams.size() != captured.length + samType.getArgumentTypes().length) {
            fail(host, "lambda " + impl + ": argument count mismatch");
        }
        for (int i = 0; i < captured.length; i++) {
            mv.visitVarInsn(Opcodes.ALOAD, 0);
            mv.visitFieldInsn(Opcodes.GETFIELD, name, "f" + i, captured[i].getDescriptor());
            adapt(mv, host, captured[i], targetParams.get(i));
        }
        Type[] samArgs = samType.getArgumentTypes();
        Type[] instArgs = instantiated.getArgumentTypes();
        slot = 1;
        for (int i = 0; i < samArgs.length; i++) {
            mv.visitVarInsn(samArgs[i].getOpcode(Opcodes.ILOAD), slot);
            slot += samArgs[i].getSize();
            Type target = targetParams.get(captured.length + i);
            if (samArgs[i].getSort() >= Type.ARRAY && instArgs[i].getSort() >= Type.ARRAY && !instArgs[i].equals(samArgs[i])) {
                mv.visitTypeInsn(Opcodes.CHECKCAST, instArgs[i].getInternalName());
                adapt(mv, host, instArgs[i], target);
            } else {
                adapt(mv, host, samArgs[i], target);
            }
        }
        Type ret;
        switch (tag) {
            case Opcodes.H_INVOKESTATIC:
                mv.visitMethodInsn(Opcodes.INVOKESTATIC, impl.getOwner(), impl.getName(), impl.getDesc(), impl.isInterface());
                ret = implType.getReturnType();
                break;
            case Opcodes.H_INVOKEVIRTUAL:
            case Opcodes.H_INVOKESPECIAL:  // a private instance method of the host, widened above
                mv.visitMethodInsn(Opcodes.INVOKEVIRTUAL, impl.getOwner(), impl.getName(), impl.getDesc(), false);
                ret = implType.getReturnType();
                break;
            case Opcodes.H_INVOKEINTERFACE:
                mv.visitMethodInsn(Opcodes.INVOKEINTERFACE, impl.getOwner(), impl.getName(), impl.getDesc(), true);
                ret = implType.getReturnType();
                break;
            case Opcodes.H_NEWINVOKESPECIAL:
                mv.visitMethodInsn(Opcodes.INVOKESPECIAL, impl.getOwner(), "<init>", impl.getDesc(), false);
                ret = Type.getObjectType(impl.getOwner());
                break;
            default:
                fail(host, "lambda handle kind " + tag);
                return null;
        }
        Type samRet = samType.getReturnType();
        if (samRet.getSort() == Type.VOID) {
            if (ret.getSize() == 2) {
                mv.visitInsn(Opcodes.POP2);
            } else if (ret.getSize() == 1) {
                mv.visitInsn(Opcodes.POP);
            }
            mv.visitInsn(Opcodes.RETURN);
        } else {
            if (ret.getSort() == Type.VOID) {
                fail(host, "lambda " + impl + " returns void for a non-void interface method");
            }
            adapt(mv, host, ret, samRet);
            mv.visitInsn(samRet.getOpcode(Opcodes.IRETURN));
        }
        mv.visitMaxs(0, 0);
        mv.visitEnd();
        cw.visitEnd();

        ClassNode node = new ClassNode();
        new ClassReader(cw.toByteArray()).accept(node, 0);
        generated.add(node);
        return name;
    }

    /** Converts the value on the stack from type `from` to type `to` (cast, box or unbox). */
    private static void adapt(MethodVisitor mv, ClassNode host, Type from, Type to) {
        if (from.equals(to)) {
            return;
        }
        boolean fromRef = from.getSort() >= Type.ARRAY;
        boolean toRef = to.getSort() >= Type.ARRAY;
        if (fromRef && toRef) {
            if (!to.getInternalName().equals("java/lang/Object")) {
                mv.visitTypeInsn(Opcodes.CHECKCAST, to.getInternalName());
            }
        } else if (!fromRef && toRef) {
            Type box = boxed(host, from);
            mv.visitMethodInsn(Opcodes.INVOKESTATIC, box.getInternalName(), "valueOf",
                    Type.getMethodDescriptor(box, from), false);
        } else if (fromRef && !toRef) {
            Type box = boxed(host, to);
            mv.visitTypeInsn(Opcodes.CHECKCAST, box.getInternalName());
            mv.visitMethodInsn(Opcodes.INVOKEVIRTUAL, box.getInternalName(), to.getClassName() + "Value",
                    Type.getMethodDescriptor(to), false);
        } else {
            fail(host, "primitive conversion " + from + " -> " + to + " in a lambda");
        }
    }

    private static Type boxed(ClassNode host, Type primitive) {
        switch (primitive.getSort()) {
            case Type.BOOLEAN: return Type.getObjectType("java/lang/Boolean");
            case Type.BYTE: return Type.getObjectType("java/lang/Byte");
            case Type.CHAR: return Type.getObjectType("java/lang/Character");
            case Type.SHORT: return Type.getObjectType("java/lang/Short");
            case Type.INT: return Type.getObjectType("java/lang/Integer");
            case Type.LONG: return Type.getObjectType("java/lang/Long");
            case Type.FLOAT: return Type.getObjectType("java/lang/Float");
            case Type.DOUBLE: return Type.getObjectType("java/lang/Double");
            default:
                fail(host, "no box for " + primitive);
                return null;
        }
    }

    private int write(File out) throws IOException {
        int n = 0;
        List<ClassNode> all = new ArrayList<>(classes.values());
        all.addAll(generated);
        for (ClassNode c : all) {
            ClassWriter cw = new ClassWriter(0);  // the code keeps its stack map frames: no instruction moved
            c.accept(cw);
            File f = new File(out, c.name + ".class");
            f.getParentFile().mkdirs();
            try (OutputStream o = new FileOutputStream(f)) {
                o.write(cw.toByteArray());
            }
            n++;
        }
        return n;
    }
}
